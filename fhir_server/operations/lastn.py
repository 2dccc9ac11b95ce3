"""Observation/$lastn: the most recent ``max`` observations per code (per patient)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from fhir_server.errors import bad_request
from fhir_server.interactions.search import authorize_search, build_bundle, check_results, search_params
from fhir_server.model import FhirRequest, FhirResponse
from fhir_server.search.query import SortKey

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter


def lastn(router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
    params = [(k, v) for k, v in search_params(req) if k != "max"]
    try:
        per_code = int(req.param("max") or 1)
    except ValueError as exc:
        raise bad_request("max must be an integer") from exc
    if per_code < 1:
        raise bad_request("max must be at least 1")
    parsed = router.search_parser().parse(["Observation"], params)
    q = parsed.query
    authorize_search(router, req, q)  # the same grants and patient/granular restrictions as a search
    date = router.registry.get("Observation", "date")
    q.sort = [SortKey(date, "date", True)]
    q.count = 1000
    q.total = "none"
    groups: dict[Any, list[Any]] = defaultdict(list)
    cursor = None
    while True:
        q.cursor = cursor
        result = router.repo.search(q)
        check_results(req, result.matches)
        for st in result.matches:
            res = st.resource or {}
            codings = (res.get("code") or {}).get("coding") or [{}]
            key = (codings[0].get("system"), codings[0].get("code"), (res.get("subject") or {}).get("reference"))
            if len(groups[key]) < per_code:
                groups[key].append(st)
        if not result.next_cursor:
            break
        cursor = result.next_cursor
    matches = [st for group in groups.values() for st in group]
    bundle = build_bundle(router, req, parsed, "Observation/$lastn", matches, [], len(matches), None)
    return FhirResponse(200, bundle)
