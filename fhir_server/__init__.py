"""DigitalFront fhir_server."""

from fhir_server.compiled import activate

activate()  # the mypyc builds of the hot modules, when present and current (fhir_server/compiled.py)
