"""DigitalFront smart_apps."""
