"""``$validate`` at type and instance level (resource-operation-validate.html).

Validation results are the answer, not a failure: the response is always 200
with an OperationOutcome (``All OK`` when nothing was found). Only a request
that cannot be processed (unparseable body, type mismatch, unknown instance)
is a 4xx. ``$validate`` runs in strict mode, like the reference validator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import authz
from fhir_server.errors import Issue, bad_request, operation_outcome
from fhir_server.interactions.common import request_resource
from fhir_server.model import FhirRequest, FhirResponse
from fhir_server.operations.parameters import parameters_of
from fhir_server.validation import MODES, validate_resource

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter


def _parameters(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(resource, mode, profile) from a Parameters body."""
    resource, mode, profile = None, None, None
    for p in parameters_of(body, "$validate"):
        name = p["name"]
        if name == "resource":
            resource = p.get("resource")
            if not isinstance(resource, dict):
                raise bad_request("The 'resource' parameter must carry a resource", code="required")
        elif name == "mode":
            mode = p.get("valueCode") or p.get("valueString")
        elif name == "profile":
            profile = p.get("valueUri") or p.get("valueCanonical")
    return resource, mode, profile


def validate_operation(router: FhirRouter, req: FhirRequest, resource_type: str | None,
                       id: str | None) -> FhirResponse:
    """POST [type]/$validate, POST|GET [type]/[id]/$validate (``mode`` create/update/delete)."""
    mode = req.param("mode")
    profile = req.param("profile")
    resource: dict[str, Any] | None = None
    if req.body or req.resource is not None:
        body = request_resource(req)
        if body.get("resourceType") == "Parameters" and resource_type != "Parameters":
            resource, p_mode, p_profile = _parameters(body)
            mode = p_mode or mode
            profile = p_profile or profile
        else:
            resource = body
    mode = mode or ("update" if id and resource is not None else "create")
    if mode not in MODES:
        raise bad_request(f"Unknown mode '{mode}': expected one of {', '.join(MODES)}", code="value")
    if resource_type:
        authz.check_interaction(req.context, "read" if id else "search", resource_type)
    if mode == "delete":
        if not id or not resource_type:
            raise bad_request("mode=delete needs an instance: [type]/[id]/$validate?mode=delete")
        router.repo.read(resource_type, id)  # 404/410 when there is nothing to delete
        return _outcome([])
    if resource is None:
        if not id or not resource_type:
            raise bad_request("$validate needs a resource: the body, or a Parameters with 'resource'",
                              code="required")
        stored = router.repo.read(resource_type, id)
        resource = stored.resource or {}
        authz.check_resource(req.context, "read", resource)
    if resource_type and resource.get("resourceType") != resource_type:
        raise bad_request(f"The resource type '{resource.get('resourceType')}' does not match the URL "
                          f"('{resource_type}')", code="invalid")
    issues = validate_resource(resource, mode=mode, terminology=router.terminology, strict=True)
    if mode == "update" and id and resource.get("id") not in (None, id):
        issues.append(Issue("error", "invalid", f"The resource id '{resource.get('id')}' does not match the "
                                                f"URL id '{id}'", [f"{resource_type}.id"]))
    if profile and profile != f"http://hl7.org/fhir/StructureDefinition/{resource.get('resourceType')}":
        issues.append(Issue("warning", "not-supported",
                            f"Profile {profile} is not known to this server; validated against the base "
                            "R4 definition only"))
    return _outcome(issues)


def _outcome(issues: list[Issue]) -> FhirResponse:
    if not any(i.severity in ("error", "fatal", "warning") for i in issues):
        issues = [*issues, Issue("information", "informational", "All OK")]
    return FhirResponse(200, operation_outcome(issues))
