"""Bulk export job state, kept in the repository's persisted ``fhir_job`` table (kind ``export``).

The request, the requester's ``RequestContext`` and the output list live in the
job's ``params`` JSON, so a job can be resumed by any process after a restart.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from fhir_server.model import RequestContext

KIND = "export"
ACTIVE = ("queued", "running")


@dataclass
class ExportRequest:
    level: str  # system | patient | group
    request_url: str
    base_url: str
    transaction_time: str
    types: list[str] | None = None
    since: str | None = None
    type_filters: dict[str, list[str]] = field(default_factory=dict)
    group: str | None = None
    patients: list[str] | None = None  # Bulk Data v2 ``patient``: only these patients' compartments
    requires_token: bool = True
    context: dict[str, Any] = field(default_factory=dict)
    output: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    heartbeat: float = 0.0
    worker: str | None = None

    def request_context(self) -> RequestContext:
        c = dict(self.context)
        scopes = c.pop("scopes", None)
        return RequestContext(scopes=frozenset(scopes) if scopes is not None else None, **c)

    @staticmethod
    def context_of(ctx: RequestContext) -> dict[str, Any]:
        return {
            "base_url": ctx.base_url,
            "scopes": sorted(ctx.scopes) if ctx.scopes is not None else None,
            "subject": ctx.subject,
            "client_id": ctx.client_id,
            "patient": ctx.patient,
            "encounter": ctx.encounter,
            "fhir_user": ctx.fhir_user,
            "token_id": ctx.token_id,
        }


def group_patients(group: dict[str, Any]) -> set[str]:
    """Ids of a Group's active Patient members (the cohort of a Group export)."""
    out = set()
    for m in group.get("member") or []:
        if not isinstance(m, dict) or m.get("inactive"):
            continue
        ref = str((m.get("entity") or {}).get("reference", ""))
        if ref.startswith("Patient/"):
            out.add(ref.split("/", 1)[1])
    return out


def save(repo: Any, job_id: str, req: ExportRequest, **values: Any) -> None:
    repo.update_job(job_id, params=json.dumps(asdict(req)), **values)


def create(repo: Any, job_id: str, req: ExportRequest) -> None:
    repo.create_job(job_id, KIND, asdict(req), None)


def load(repo: Any, job_id: str) -> tuple[dict[str, Any], ExportRequest] | None:
    job = repo.get_job(job_id)
    if job is None or job["kind"] != KIND:
        return None
    raw = job["params"]
    data = json.loads(raw) if isinstance(raw, str) else raw
    return job, ExportRequest(**data)


def pending(repo: Any, stale_after: float) -> list[str]:
    """Jobs to (re)start: queued ones, and running ones whose worker stopped heart-beating."""
    out = []
    now = time.time()
    for job in repo.list_jobs(KIND):
        if job["status"] == "queued":
            out.append(job["id"])
        elif job["status"] == "running":
            loaded = load(repo, job["id"])
            if loaded and now - loaded[1].heartbeat > stale_after:
                out.append(job["id"])
    return list(reversed(out))  # oldest first
