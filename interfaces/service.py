"""One pipeline per app: the store on the app's engine, writes through the app's router."""

from __future__ import annotations

from typing import Any

from interfaces.fhir_write import RouterGroupWriter, router_transaction
from interfaces.pipeline import Hl7Pipeline
from interfaces.prepare import PreparePool, default_workers
from interfaces.store import MessageStore

_ATTR = "_hl7v2_pipeline"


def pipeline_for(services: Any) -> Hl7Pipeline:
    """The shared pipeline of ``services`` (one lock, so HTTP and MLLP ingest stay in arrival order)."""
    existing = getattr(services, _ATTR, None)
    if isinstance(existing, Hl7Pipeline):
        return existing
    settings = getattr(services, "settings", None)
    extra = getattr(settings, "extra", {}) or {}
    repo = getattr(services, "repo", None)
    # group commit needs the message store and the FHIR tables in one database (one transaction)
    group = RouterGroupWriter(services.router, repo) if getattr(repo, "engine", None) is services.engine else None
    workers = getattr(settings, "hl7_workers", 0)
    workers = default_workers() if workers is None else workers
    pool = None
    if group is not None and workers > 0:
        pool = PreparePool(workers, services.router.registry, base_url=getattr(settings, "base_url", None) or None,
                           validate=getattr(settings, "validate_writes", True))
    pipeline = Hl7Pipeline(
        MessageStore(services.engine, write_engine=repo.write_engine if group is not None and repo else None),
        router_transaction(services.router),
        parser=extra.get("hl7_parser", "er7"),
        group=group,
        prepare_pool=pool,
    )
    setattr(services, _ATTR, pipeline)
    return pipeline
