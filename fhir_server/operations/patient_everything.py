"""Patient/$everything: the patient, its compartment, and what those reference (one level)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fhir_server import authz
from fhir_server.errors import bad_request
from fhir_server.interactions.search import run_search
from fhir_server.model import FhirRequest, FhirResponse
from fhir_server.search.parser import compartment_criterion
from fhir_server.search.query import Criterion
from fhir_server.search.registry import compartment_definitions

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter

ALLOWED = {"_since", "_type", "_count", "_cursor", "_format", "_pretty", "_summary", "_elements", "start", "end"}


def everything(router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
    for k, _v in req.query:
        if k not in ALLOWED:
            raise bad_request(f"Unknown $everything parameter {k!r}")
    if id is None:
        raise bad_request("Type-level Patient/$everything needs a patient id (use Patient/[id]/$everything)")
    router.repo.read("Patient", id)  # 404/410 for an unknown patient
    authz.check_interaction(req.context, "read", "Patient")
    types_param = req.param("_type")
    members = sorted(compartment_definitions()["Patient"])
    types = [t for t in members if t in router.resource_types]
    if types_param:  # asked for by name: each must be granted (403 otherwise, in the search)
        wanted = {t.strip() for t in types_param.split(",") if t.strip()}
        types = [t for t in types if t in wanted]
    else:  # "everything" the token may see: the compartment's types its scopes grant
        types = [t for t in types if authz.permits(req.context, "search", t)]
    subs = [c for t in types if (c := compartment_criterion(router.registry, "Patient", id, t)) is not None]
    start, end = req.param("start"), req.param("end")
    if start or end:
        subs = [_within_care_dates(router, c, start, end) for c in subs]
    if not subs:
        raise bad_request("No resource type of _type is in the Patient compartment")
    crit = Criterion("or", types[0], subs=subs)
    query = [(k, v) for k, v in req.query if k in ("_count", "_cursor", "_summary", "_elements")]
    since = req.param("_since")
    if since:
        query.append(("_lastUpdated", f"ge{since}"))
    sub_req = FhirRequest("GET", req.path, query, req.headers, context=req.context)
    resp = run_search(router, sub_req, router.repo, [s.resource_type for s in subs], f"Patient/{id}/$everything",
                      extra=[crit])
    _relink(resp.resource, req.query)
    return resp


def _relink(bundle: dict[str, Any] | None, original: list[tuple[str, str]]) -> None:
    """Links repeat the operation's own parameters (_type, _since, start, end), not the internal search."""
    if not bundle:
        return
    kept = [(k, v) for k, v in original if k != "_cursor"]
    for link in bundle.get("link", []):
        base, _, query = link["url"].partition("?")
        cursor = [(k, v) for k, v in parse_qsl(query) if k == "_cursor"]
        params = kept + (cursor if link["relation"] == "next" else [])
        link["url"] = base + (f"?{urlencode(params)}" if params else "")


def _within_care_dates(router: FhirRouter, member: Criterion, start: str | None, end: str | None) -> Criterion:
    """start/end restrict by each type's ``date`` parameter; resources without one (or without a date) stay.

    Both halves are typed by their hashed identities, so the AND stays within ``member``'s resource type.
    """
    rt = member.resource_type
    sp = router.registry.get(rt, "date")
    if sp is None or sp.type != "date" or rt == "Patient":
        return member
    bounds = [("date", f"ge{start}")] if start else []
    bounds += [("date", f"le{end}")] if end else []
    dated = router.search_parser().parse([rt], bounds).query.criteria
    undated = Criterion("param", rt, param=sp, modifier="missing", values=["true"])
    return Criterion("and", rt, subs=[member, Criterion("or", rt, subs=[Criterion("and", rt, subs=dated), undated])])
