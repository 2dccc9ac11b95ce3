"""DigitalFront nlp."""
