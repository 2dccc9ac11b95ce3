"""One pipeline per app: the store on the app's engine, writes through the app's router."""

from __future__ import annotations

from typing import Any

from interfaces.fhir_write import router_transaction
from interfaces.pipeline import Hl7Pipeline
from interfaces.store import MessageStore

_ATTR = "_hl7v2_pipeline"


def pipeline_for(services: Any) -> Hl7Pipeline:
    """The shared pipeline of ``services`` (one lock, so HTTP and MLLP ingest stay in arrival order)."""
    existing = getattr(services, _ATTR, None)
    if isinstance(existing, Hl7Pipeline):
        return existing
    settings = getattr(services, "settings", None)
    extra = getattr(settings, "extra", {}) or {}
    pipeline = Hl7Pipeline(
        MessageStore(services.engine), router_transaction(services.router), parser=extra.get("hl7_parser", "er7")
    )
    setattr(services, _ATTR, pipeline)
    return pipeline
