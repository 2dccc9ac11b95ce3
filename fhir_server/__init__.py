"""DigitalFront fhir_server."""
