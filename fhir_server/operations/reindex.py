"""$reindex: rebuild index rows in the background (custom SearchParameters become usable).

Runs in a daemon thread in small transactions, so reads and writes go on; the
job's progress is persisted and readable with ``GET [base]/$reindex?job=<id>``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from fhir_server import authz
from fhir_server.errors import not_found
from fhir_server.model import FhirRequest, FhirResponse

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter

log = logging.getLogger(__name__)


def _job_parameters(job: dict[str, Any]) -> dict[str, Any]:
    params = [{"name": "job", "valueString": job["id"]}, {"name": "status", "valueCode": job["status"]},
              {"name": "progress", "valueInteger": job["progress"]}]
    if job.get("total") is not None:
        params.append({"name": "total", "valueInteger": job["total"]})
    if job.get("error"):
        params.append({"name": "error", "valueString": job["error"]})
    return {"resourceType": "Parameters", "parameter": params}


def reindex(router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
    repo: Any = router.repo
    job_id = req.param("job")
    starts = not (req.method == "GET" or job_id)
    authz.check_maintenance(req.context, "reindex", "update" if starts else "read", resource_type)
    if not starts:
        if not job_id:
            return FhirResponse(200, {"resourceType": "Parameters", "parameter": [
                {"name": "job", "valueString": j["id"]} for j in repo.list_jobs("reindex")]})
        job = repo.get_job(job_id)
        if job is None:
            raise not_found(f"No reindex job {job_id}")
        return FhirResponse(200, _job_parameters(job))
    types = [resource_type] if resource_type else None
    job_id = str(uuid.uuid4())
    total = sum(n for t, n in repo.count_by_type().items() if types is None or t in types)
    repo.create_job(job_id, "reindex", {"types": types}, total)

    def work() -> None:
        try:
            repo.update_job(job_id, status="running")
            done = repo.reindex(types, progress=lambda n: repo.update_job(job_id, progress=n))
            repo.update_job(job_id, status="completed", progress=done)
        except Exception as exc:  # noqa: BLE001 - recorded on the job
            log.exception("reindex job %s failed", job_id)
            repo.update_job(job_id, status="failed", error=str(exc))

    threading.Thread(target=work, name=f"reindex-{job_id[:8]}", daemon=True).start()
    return FhirResponse(202, _job_parameters(repo.get_job(job_id) or {}),
                        {"Content-Location": f"{req.context.base_url.rstrip('/')}/$reindex?job={job_id}"})
