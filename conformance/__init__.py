"""DigitalFront conformance."""
