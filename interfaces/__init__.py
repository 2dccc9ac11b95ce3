"""DigitalFront interfaces."""
