"""history at instance, type and system level (_since, _at, _count, paging)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fhir_server import authz
from fhir_server.errors import bad_request
from fhir_server.interactions.common import check_id, check_type, http_date
from fhir_server.model import FhirRequest, FhirResponse
from fhir_server.repository import FhirRepository
from fhir_server.search.values import date_range
from fhir_server.timeutil import from_us

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter

MAX_COUNT = 1000


def _instant(name: str, value: str | None, end: bool = False) -> datetime | None:
    """The start of the instant's precision range (``_since``) or its last microsecond (``_at``)."""
    if value is None:
        return None
    rng = date_range(value)
    if rng is None:
        raise bad_request(f"{name} must be a FHIR instant, got {value!r}")
    return from_us(rng[1] - 1 if end else rng[0])


def history(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str | None,
            id: str | None) -> FhirResponse:
    if resource_type:
        check_type(router, resource_type)
    if id:
        check_id(id)
    level = "history-instance" if id else "history-type" if resource_type else "history-system"
    authz.check_interaction(req.context, level, resource_type)
    allowed = {"_since", "_at", "_count", "_offset", "_format", "_pretty", "_summary", "_elements", "_list"}
    for k, _v in req.query:
        if k not in allowed:
            raise bad_request(f"Unknown history parameter {k!r}")
    try:
        count = min(int(req.param("_count") or 20), MAX_COUNT)
        offset = max(int(req.param("_offset") or 0), 0)
    except ValueError as exc:
        raise bad_request("_count and _offset must be integers") from exc
    since, at = _instant("_since", req.param("_since")), _instant("_at", req.param("_at"), end=True)
    page = repo.history(resource_type, id, since=since, at=at, count=count, offset=offset)
    if id and page.total == 0:
        repo.read(resource_type or "", id)  # 404 for an unknown resource
    base = req.context.base_url.rstrip("/")
    path = "/".join(p for p in (resource_type, id, "_history") if p)
    keep = [(k, v) for k, v in req.query if k not in ("_offset",)]
    entries = []
    for st in page.entries:
        if st.resource is not None:
            authz.check_resource(req.context, "history", st.resource)
        entry: dict = {"fullUrl": f"{base}/{st.resource_type}/{st.id}",
                       "request": {"method": st.method if st.method in ("POST", "PUT", "DELETE", "PATCH") else "PUT",
                                   "url": st.resource_type if st.method == "POST"
                                   else f"{st.resource_type}/{st.id}"},
                       "response": {"status": "200 OK" if not st.deleted else "204 No Content",
                                    "etag": st.etag, "lastModified": http_date(st)}}
        if st.resource is not None:
            entry["resource"] = st.resource
        entries.append(entry)
    links = [{"relation": "self", "url": f"{base}/{path}" + (f"?{urlencode(req.query)}" if req.query else "")}]
    if page.next_offset is not None:
        links.append({"relation": "next", "url": f"{base}/{path}?{urlencode(keep + [('_offset', page.next_offset)])}"})
    if offset > 0:
        prev = max(offset - count, 0)
        links.append({"relation": "previous", "url": f"{base}/{path}?{urlencode(keep + [('_offset', prev)])}"})
    bundle = {"resourceType": "Bundle", "type": "history", "total": page.total, "link": links, "entry": entries}
    return FhirResponse(200, bundle)
