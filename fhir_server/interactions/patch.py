"""patch: JSON Patch and FHIRPath Patch, instance and conditional, with If-Match."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from fhir_server import authz
from fhir_server.errors import bad_request
from fhir_server.interactions.common import (
    check_id,
    check_type,
    match_conditional,
    multiple_matches,
    parse_etag,
    write_response,
)
from fhir_server.model import FhirRequest, FhirResponse
from fhir_server.patch import apply_patch
from fhir_server.repository import FhirRepository, StoredResource

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter


def patch_body(req: FhirRequest) -> tuple[str, Any]:
    """(content type, body) of a patch, from HTTP or from a transaction entry (Binary or Parameters)."""
    if req.resource is not None:
        res = req.resource
        if res.get("resourceType") == "Binary":  # JSON Patch inside a Bundle travels as Binary
            return res.get("contentType", "application/json-patch+json"), base64.b64decode(res.get("data", ""))
        return "application/fhir+json", res
    if not req.body:
        raise bad_request("A patch needs a body", code="required")
    return req.headers.get("content-type") or "", req.body


def _apply(router: FhirRouter, req: FhirRequest, repo: FhirRepository, current: StoredResource) -> FhirResponse:
    authz.check_resource(req.context, "update", current.resource or {})
    content_type, body = patch_body(req)
    patched = apply_patch(current.resource or {}, content_type, body)
    patched.pop("meta", None) if not (current.resource or {}).get("meta") else None
    router.validate_write(patched, "update")
    authz.check_resource(req.context, "update", patched)
    if_match = parse_etag(req.headers.get("if-match"))
    result = repo.update(patched, if_match=if_match if if_match is not None else current.version,
                         allow_create=False)
    return write_response(req, result.stored, 200, f"Patched {current.resource_type}/{current.id}")


def patch(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str, id: str) -> FhirResponse:
    check_type(router, resource_type)
    check_id(id)
    authz.check_interaction(req.context, "patch", resource_type)
    current = repo.read(resource_type, id)
    if_match = parse_etag(req.headers.get("if-match"))
    if if_match is not None and if_match != current.version:
        from fhir_server.errors import precondition_failed

        raise precondition_failed(f"Version conflict: If-Match W/\"{if_match}\" but current is W/\"{current.version}\"")
    return _apply(router, req, repo, current)


def conditional_patch(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str
                      ) -> FhirResponse:
    check_type(router, resource_type)
    authz.check_interaction(req.context, "patch", resource_type)
    found = match_conditional(router, repo, resource_type, req.query)
    if len(found) > 1:
        raise multiple_matches("Conditional patch")
    if not found:
        from fhir_server.errors import not_found

        raise not_found("No resource matched the conditional patch criteria")
    return _apply(router, req, repo, found[0])
