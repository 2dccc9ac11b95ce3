"""DigitalFront inference."""
