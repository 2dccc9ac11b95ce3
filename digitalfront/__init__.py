"""DigitalFront: app factory, configuration and command line."""
