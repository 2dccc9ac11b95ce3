"""create, including conditional create (If-None-Exist)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server import authz
from fhir_server.errors import bad_request
from fhir_server.interactions.common import (
    check_type,
    if_none_exist_query,
    match_for_write,
    multiple_matches,
    request_resource,
    resource_headers,
    write_response,
)
from fhir_server.model import FhirRequest, FhirResponse
from fhir_server.repository import FhirRepository

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter


def create(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str,
           assigned_id: str | None = None) -> FhirResponse:
    check_type(router, resource_type)
    authz.check_interaction(req.context, "create", resource_type)
    resource = request_resource(req)
    if resource["resourceType"] != resource_type:
        raise bad_request(f"Body is a {resource['resourceType']} but the URL says {resource_type}")
    condition = req.headers.get("if-none-exist")
    if not condition:
        return _store(router, req, repo, resource, assigned_id)
    with repo.unit_of_work() as uow:  # the search and the create in one transaction (see match_for_write)
        found = match_for_write(router, uow, resource_type, if_none_exist_query(condition))
        if len(found) > 1:
            raise multiple_matches("If-None-Exist")
        if found:
            existing = found[0]
            authz.check_resource(req.context, "read", existing.resource or {})
            return FhirResponse(200, existing.resource, resource_headers(req, existing, with_location=True))
        return _store(router, req, uow, resource, assigned_id)


def _store(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource: dict, assigned_id: str | None
           ) -> FhirResponse:
    resource_type = resource["resourceType"]
    resource = {k: v for k, v in resource.items() if k != "id"}  # the server assigns the id on create
    if not req.prevalidated:
        router.validate_write(resource, "create")
    authz.check_resource(req.context, "create", resource)
    result = repo.create(resource, id=assigned_id)
    return write_response(req, result.stored, 201, f"Created {resource_type}/{result.stored.id}")
