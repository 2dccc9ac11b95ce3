"""update (PUT), update-as-create with a client id, and conditional update."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server import authz
from fhir_server.errors import bad_request
from fhir_server.interactions.common import (
    check_id,
    check_stored,
    check_type,
    match_for_write,
    multiple_matches,
    parse_etag,
    request_resource,
    write_response,
)
from fhir_server.model import FhirRequest, FhirResponse
from fhir_server.repository import FhirRepository

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter


def update(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str, id: str) -> FhirResponse:
    check_type(router, resource_type)
    check_id(id)
    authz.check_interaction(req.context, "update", resource_type)
    resource = request_resource(req)
    if resource["resourceType"] != resource_type:
        raise bad_request(f"Body is a {resource['resourceType']} but the URL says {resource_type}")
    if "id" not in resource:
        raise bad_request("The resource in an update must carry its id", code="required")
    if resource["id"] != id:
        raise bad_request(f"Body id {resource['id']!r} does not match the URL id {id!r}")
    if req.context.unrestricted:
        return _store(router, req, repo, resource, parse_etag(req.headers.get("if-match")))
    with repo.unit_of_work() as uow:  # the stored version checked and replaced in one transaction
        check_stored(req, uow, "update", resource_type, id)
        return _store(router, req, uow, resource, parse_etag(req.headers.get("if-match")))


def _store(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource: dict, if_match: int | None
           ) -> FhirResponse:
    if not req.prevalidated:
        router.validate_write(resource, "update")
    authz.check_resource(req.context, "update", resource)
    if resource["resourceType"] == "SearchParameter":
        router.check_search_parameter(resource)
    result = repo.update(resource, if_match=if_match)
    status = 201 if result.created else 200
    rt = resource["resourceType"]
    return write_response(req, result.stored, status, f"{'Created' if result.created else 'Updated'} "
                                                      f"{rt}/{result.stored.id}")


def conditional_update(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str
                       ) -> FhirResponse:
    check_type(router, resource_type)
    authz.check_interaction(req.context, "update", resource_type)
    resource = request_resource(req)
    if resource["resourceType"] != resource_type:
        raise bad_request(f"Body is a {resource['resourceType']} but the URL says {resource_type}")
    with repo.unit_of_work() as uow:  # the search and the write in one transaction (see match_for_write)
        found = match_for_write(router, uow, resource_type, req.query)
        if len(found) > 1:
            raise multiple_matches("Conditional update")
        if found:
            target = found[0]
            if "id" in resource and resource["id"] != target.id:
                raise bad_request(f"Body id {resource['id']!r} differs from the matched resource {target.id!r}")
            authz.check_resource(req.context, "update", target.resource or {})
            return _store(router, req, uow, {**resource, "id": target.id}, parse_etag(req.headers.get("if-match")))
        if "id" in resource:
            check_id(resource["id"])
            if repo_exists(uow, resource_type, resource["id"]):
                raise bad_request(f"No match for the criteria, but {resource_type}/{resource['id']} exists")
            return _store(router, req, uow, resource, None)
        from fhir_server.interactions.create import create

        return create(router, req, uow, resource_type)


def repo_exists(repo: FhirRepository, resource_type: str, id: str) -> bool:
    try:
        repo.read(resource_type, id)
        return True
    except Exception:  # noqa: BLE001 - 404/410 both mean "not current"
        return False
