"""Wiring: the $extract operations and the optional after-commit subscriber."""

from __future__ import annotations

from typing import Any

from nlp.operation_extract import make_handler
from nlp.service import NlpService
from nlp.subscriber import NoteWorker


def init_app(app: Any, services: Any) -> None:
    service = NlpService()
    handler = make_handler(service)
    services.router.register_operation("extract", handler, level="system", methods=("POST",))
    services.router.register_operation("extract", handler, level="instance",
                                       resource_types=["DocumentReference", "DiagnosticReport"], methods=("POST",))
    extras = getattr(services, "extras", None)
    if isinstance(extras, dict):
        extras["nlp"] = service
    if getattr(services.settings, "nlp_on_write", False):
        from fhir_server.client import LocalFhirClient

        worker = NoteWorker(service, LocalFhirClient(services.router))
        services.events.subscribe(worker.on_event, resource_type="DocumentReference")
        if isinstance(extras, dict):
            extras["nlp_worker"] = worker
