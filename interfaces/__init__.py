"""DigitalFront interfaces."""

import fhir_server  # noqa: F401 - activates the compiled hot modules (fhir_server/compiled.py) before ours load
