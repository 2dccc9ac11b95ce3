"""DigitalFront terminology."""
