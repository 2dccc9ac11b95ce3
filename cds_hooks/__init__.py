"""DigitalFront cds_hooks."""
