"""delete (tombstone version) and conditional delete (single, or multiple when configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server import authz
from fhir_server.errors import informational
from fhir_server.interactions.common import (
    check_id,
    check_stored,
    check_type,
    match_conditional,
    multiple_matches,
    parse_etag,
    prefer,
)
from fhir_server.model import FhirRequest, FhirResponse, Headers
from fhir_server.repository import FhirRepository

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter


def _response(req: FhirRequest, text: str, etag: str | None = None) -> FhirResponse:
    headers = Headers({"ETag": etag}) if etag else Headers()
    if (prefer(req, "return") or "") == "minimal":
        return FhirResponse(204, None, headers)
    return FhirResponse(200, informational(text), headers)


def delete(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str, id: str) -> FhirResponse:
    check_type(router, resource_type)
    check_id(id)
    authz.check_interaction(req.context, "delete", resource_type)
    check_stored(req, repo, "delete", resource_type, id)
    result = repo.delete(resource_type, id, if_match=parse_etag(req.headers.get("if-match")))
    if result is None:
        return _response(req, f"{resource_type}/{id} did not exist; nothing to delete")
    if not result.changed:
        return _response(req, f"{resource_type}/{id} was already deleted", result.stored.etag)
    if resource_type == "SearchParameter":
        router.forget_search_parameter(id)
    return _response(req, f"Deleted {resource_type}/{id}", result.stored.etag)


def conditional_delete(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str
                       ) -> FhirResponse:
    check_type(router, resource_type)
    authz.check_interaction(req.context, "delete", resource_type)
    limit = 1000 if router.settings.allow_multiple_delete else 2
    found = match_conditional(router, repo, resource_type, req.query, limit=limit)
    if len(found) > 1 and not router.settings.allow_multiple_delete:
        raise multiple_matches("Conditional delete")
    if not found:
        return _response(req, "No resource matched the criteria; nothing deleted")
    with repo.unit_of_work() as uow:
        for stored in found:
            authz.check_resource(req.context, "delete", stored.resource or {})
            uow.delete(resource_type, stored.id)
    return _response(req, f"Deleted {len(found)} {resource_type} resource(s)")
