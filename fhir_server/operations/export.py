"""Bulk Data Access 2.0 ``$export`` (system, ``Patient/$export``, ``Group/[id]/$export``).

Kick-off answers 202 with ``Content-Location`` pointing at ``$export-poll-status``;
polling answers 202 (``Retry-After``, ``X-Progress``) until the manifest is ready;
DELETE on the status URL cancels; files are served by ``$export-file``.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fhir_server import authz
from fhir_server.bulk import jobs
from fhir_server.bulk.runner import BulkRunner
from fhir_server.errors import Issue, OperationOutcomeError, bad_request, forbidden, not_found, operation_outcome
from fhir_server.model import FhirRequest, FhirResponse, Headers, RequestContext
from fhir_server.operations.parameters import parameters_of
from fhir_server.validation.primitives import ID_RE

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter

OUTPUT_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
KICKOFF_PARAMS = {"_outputFormat", "_since", "_type", "_typeFilter", "patient"}
_FILE = re.compile(r"[A-Z][A-Za-z]+\.ndjson")
_JOB = re.compile(r"[0-9a-f-]{36}")
_PATIENT_REF = re.compile(rf"Patient/({ID_RE.pattern})(?:/_history/[^/]+)?")  # relative, or on our base


class ExportService:
    """The four handlers bound to one runner (one per app)."""

    def __init__(self, runner: BulkRunner, requires_token: bool) -> None:
        self.runner = runner
        self.requires_token = requires_token

    # ------------------------------------------------------------------ kick-off
    def kickoff(self, router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
        if "respond-async" not in (req.headers.get("prefer") or ""):
            raise bad_request("$export requires the header 'Prefer: respond-async'")
        params = _params(req)
        unknown = sorted({k for k, _ in params} - KICKOFF_PARAMS)
        if unknown:
            raise bad_request(f"Unsupported $export parameter(s): {', '.join(unknown)}")
        fmt = _one(params, "_outputFormat")
        if fmt is not None and fmt not in OUTPUT_FORMATS:
            raise bad_request(f"_outputFormat {fmt!r} is not supported; use application/fhir+ndjson")
        since = _one(params, "_since")
        if since is not None:
            try:
                parsed = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError as exc:
                raise bad_request(f"_since must be a FHIR instant, not {since!r}") from exc
            if parsed.tzinfo is None:
                raise bad_request("_since must include a time zone")
        types = _list(params, "_type")
        for t in types or []:
            if t not in router.resource_types:
                raise bad_request(f"Unknown resource type {t!r} in _type")
            authz.check_interaction(req.context, "search", t)
        type_filters: dict[str, list[str]] = {}
        for value in (v for k, v in params if k == "_typeFilter"):
            for one in value.split(","):
                rtype, sep, query = one.partition("?")
                if not sep or rtype not in router.resource_types or (types and rtype not in types):
                    raise bad_request(f"_typeFilter {one!r} must be Type?query for a type being exported")
                router.search_parser().parse([rtype], parse_qsl(query, keep_blank_values=True))  # 400 if bad
                type_filters.setdefault(rtype, []).append(query)
        level = "system" if resource_type is None else ("group" if resource_type == "Group" else "patient")
        group: dict[str, Any] | None = None
        if level == "group":
            group = router.repo.read("Group", id or "").resource or {}
            if group.get("type") not in ("person", None) or group.get("actual") is False:
                raise bad_request("Only actual Groups of kind person can be exported")
            authz.check_resource(req.context, "read", group)
        patients = _patients(router, params, level, group, req.context)
        job_id = str(uuid.uuid4())
        base = req.context.base_url.rstrip("/")
        query = f"?{urlencode(req.query)}" if req.query else ""
        request_url = f"{base}/{req.path}{query}"
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        export = jobs.ExportRequest(
            level=level,
            request_url=request_url,
            base_url=base,
            transaction_time=now,
            types=types,
            since=since,
            type_filters=type_filters,
            group=id,
            patients=patients,
            requires_token=self.requires_token,
            context=jobs.ExportRequest.context_of(req.context),
        )
        jobs.create(router.repo, job_id, export)
        self.runner.notify()
        return FhirResponse(
            202,
            _outcome("information", f"Export job {job_id} accepted"),
            Headers({"Content-Location": f"{base}/$export-poll-status?_jobId={job_id}"}),
        )

    # ------------------------------------------------------------------ status / cancel
    def status(self, router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
        job_id, (job, export) = self._job(router, req)
        if req.method == "DELETE":
            if job["status"] in jobs.ACTIVE or job["status"] == "completed":
                router.repo.update_job(job_id, status="cancelled")  # type: ignore[attr-defined]
                if job["status"] == "completed":
                    import shutil

                    shutil.rmtree(self.runner.job_dir(job_id), ignore_errors=True)
                return FhirResponse(202, _outcome("information", f"Export job {job_id} cancelled"))
            raise not_found(f"No active export job {job_id}")
        if job["status"] in jobs.ACTIVE:
            progress = f"{job['status']}: {job['progress']} resources exported"
            return FhirResponse(202, None, Headers({"Retry-After": "2", "X-Progress": progress}))
        if job["status"] == "failed":
            raise OperationOutcomeError(
                500, f"Export job {job_id} failed: {job.get('error') or 'unknown'}", code="exception"
            )
        base = export.base_url
        manifest = {
            "transactionTime": export.transaction_time,
            "request": export.request_url,
            "requiresAccessToken": export.requires_token,
            "output": [
                {
                    "type": o["type"],
                    "url": f"{base}/$export-file?" + urlencode({"_jobId": job_id, "file": o["file"]}),
                    "count": o["count"],
                }
                for o in export.output
            ],
            "error": export.errors,
        }
        return FhirResponse(
            200,
            None,
            Headers({"Expires": _http_date_plus(3600)}),
            raw=json.dumps(manifest).encode(),
            raw_content_type="application/json",
        )

    # ------------------------------------------------------------------ files
    def file(self, router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
        job_id, (job, _export) = self._job(router, req)
        name = req.param("file") or ""
        if job["status"] != "completed" or not _FILE.fullmatch(name):
            raise not_found(f"No export file {name!r} for job {job_id}")
        path = self.runner.job_dir(job_id) / name
        if not path.is_file():
            raise not_found(f"No export file {name!r} for job {job_id}")
        return FhirResponse(200, None, raw=path.read_bytes(), raw_content_type="application/fhir+ndjson")

    def _job(self, router: FhirRouter, req: FhirRequest) -> tuple[str, tuple[dict[str, Any], jobs.ExportRequest]]:
        job_id = req.param("_jobId") or ""
        loaded = jobs.load(router.repo, job_id) if _JOB.fullmatch(job_id) else None
        if loaded is None or loaded[0]["status"] == "cancelled":
            raise not_found(f"No export job {job_id!r}")
        owner = loaded[1].context
        ctx = req.context
        if not ctx.unrestricted and (owner.get("client_id") != ctx.client_id or owner.get("subject") != ctx.subject):
            raise forbidden("This export job belongs to another client")
        return job_id, loaded


def register(router: FhirRouter, data_dir: str, requires_token: bool, start_worker: bool = True) -> ExportService:
    """Register $export, $export-poll-status and $export-file on ``router`` and start the worker."""
    runner = BulkRunner(router, data_dir)
    svc = ExportService(runner, requires_token)
    definition = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
    router.register_operation("export", svc.kickoff, level="system", definition=definition)
    router.register_operation(
        "export",
        svc.kickoff,
        level="type",
        resource_types=["Patient"],
        definition="http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
    )
    router.register_operation(
        "export",
        svc.kickoff,
        level="instance",
        resource_types=["Group"],
        definition="http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
    )
    router.register_operation("export-poll-status", svc.status, level="system", methods=("GET", "DELETE"))
    router.register_operation("export-file", svc.file, level="system", methods=("GET",))
    if start_worker:
        runner.resume_pending()
    return svc


def _patients(router: FhirRouter, params: list[tuple[str, str]], level: str, group: dict[str, Any] | None,
              ctx: RequestContext) -> list[str] | None:
    """Bulk Data v2 ``patient``: the ids of the listed patients, each of which must exist (and be an active member
    of the group at the group level); a patient the server does not have is a 400, as the spec advises. One the
    caller may not read gets the same answer, so a patient-scoped token cannot probe for other patients."""
    refs = [v for k, v in params if k == "patient"]
    if not refs:
        return None
    if level == "system":
        raise bad_request("The patient parameter applies to Patient and Group exports, not to a system export")
    members = None if group is None else jobs.group_patients(group)
    ids = []
    for ref in refs:
        m = _PATIENT_REF.fullmatch(ref.removeprefix(ctx.base_url.rstrip("/") + "/"))
        if m is None or not _readable_patient(router, ctx, m.group(1)):
            raise bad_request(f"patient {ref!r} is not a Patient on this server")
        pid = m.group(1)
        if members is not None and pid not in members:
            raise bad_request(f"patient {ref!r} is not a member of this Group")
        ids.append(pid)
    return sorted(set(ids))


def _readable_patient(router: FhirRouter, ctx: RequestContext, pid: str) -> bool:
    try:
        authz.check_resource(ctx, "search", router.repo.read("Patient", pid).resource or {})
    except OperationOutcomeError:  # 404, 410 or not permitted: one answer
        return False
    return True


def _params(req: FhirRequest) -> list[tuple[str, str]]:
    out = list(req.query)
    body: Any = req.resource
    if body is None and req.method == "POST" and req.body:
        try:
            body = json.loads(req.body)
        except ValueError as exc:
            raise bad_request("The $export POST body must be a Parameters resource") from exc
    if req.method == "POST" and body is not None:
        for p in parameters_of(body, "$export"):
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if p["name"] == "patient" and isinstance(value, dict):  # Bulk Data v2: valueReference
                value = value.get("reference")
            if not isinstance(value, str):
                raise bad_request(f"$export parameter {p.get('name')!r} needs a string value")
            out.append((str(p.get("name")), value))
    return out


def _one(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise bad_request(f"{name} may be given only once")
    return values[0] if values else None


def _list(params: list[tuple[str, str]], name: str) -> list[str] | None:
    values = [t.strip() for k, v in params if k == name for t in v.split(",") if t.strip()]
    return values or None


def _outcome(severity: str, text: str) -> dict[str, Any]:
    return operation_outcome([Issue(severity, "informational", text)])


def _http_date_plus(seconds: int) -> str:
    import time
    from email.utils import formatdate

    return formatdate(time.time() + seconds, usegmt=True)
