"""Patient/$everything: the patient, its compartment, and what those reference (one level)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    if types_param:
        wanted = {t.strip() for t in types_param.split(",") if t.strip()}
        types = [t for t in types if t in wanted]
    subs = [c for t in types if (c := compartment_criterion(router.registry, "Patient", id, t)) is not None]
    if not subs:
        raise bad_request("No resource type of _type is in the Patient compartment")
    crit = Criterion("or", types[0], subs=subs)
    query = [(k, v) for k, v in req.query if k in ("_count", "_cursor", "_summary", "_elements")]
    since = req.param("_since")
    if since:
        query.append(("_lastUpdated", f"ge{since}"))
    sub_req = FhirRequest("GET", req.path, query, req.headers, context=req.context)
    return run_search(router, sub_req, router.repo, [s.resource_type for s in subs], f"Patient/{id}/$everything",
                      extra=[crit])
