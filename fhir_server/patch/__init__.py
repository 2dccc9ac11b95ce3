"""The patch interaction's body formats: JSON Patch and FHIRPath Patch (http.html#patch).

``apply_patch`` is the one entry point the router's patch interaction calls: it
picks the format from the Content-Type, applies the patch to a copy of the
stored resource and returns the patched resource (validation and storage stay
with the caller). Every failure is an ``OperationOutcomeError``: 400 for a
malformed patch, 415 for an unknown patch media type, 422 for a patch that
cannot be applied to this resource.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Issue, OperationOutcomeError, bad_request, unprocessable
from fhir_server.patch.fhirpath_patch import apply_fhirpath_patch
from fhir_server.patch.json_patch import apply_json_patch, parse_json_patch

JSON_PATCH = "application/json-patch+json"
FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir", "text/json"})
FHIR_XML_TYPES = frozenset({"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml"})

#: media types the patch interaction accepts, for the CapabilityStatement's ``patchFormat``
PATCH_FORMATS = (JSON_PATCH, "application/fhir+json", "application/fhir+xml")


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def apply_patch(resource: dict[str, Any], content_type: str | None,
                body: bytes | str | dict[str, Any] | list[Any]) -> dict[str, Any]:
    """Patch a copy of ``resource``; ``body`` is raw bytes or an already-parsed document."""
    mime = _mime(content_type)
    if not isinstance(body, bytes | str | dict | list):
        raise bad_request("The patch body must be a JSON document", code="structure")
    if mime == JSON_PATCH:
        if isinstance(body, bytes | str) and not body.strip():
            raise bad_request("The JSON Patch body is empty", code="required")
        if isinstance(body, dict):
            raise bad_request("A JSON Patch document must be a JSON array of operations", code="structure")
        result = apply_json_patch(resource, parse_json_patch(body))
    elif mime in FHIR_JSON_TYPES or mime in FHIR_XML_TYPES:
        if isinstance(body, dict):
            parameters: Any = body
        elif isinstance(body, list):
            raise bad_request("A FHIRPath Patch body must be a Parameters resource", code="structure")
        else:
            from fhir_server.formats import parse_body

            raw = body.encode("utf-8") if isinstance(body, str) else body
            parameters = parse_body(raw, content_type)
        result = apply_fhirpath_patch(resource, parameters)
    else:
        raise OperationOutcomeError(415, [Issue(
            "error", "not-supported",
            f"Unsupported patch media type {mime or '(none)'!r}: use {JSON_PATCH} (JSON Patch) or "
            "application/fhir+json / application/fhir+xml with a Parameters resource (FHIRPath Patch)")])
    check_identity(resource, result)
    return result


def check_identity(before: dict[str, Any], after: Any) -> None:
    """A patch edits a resource; it may not turn it into another one (type or id)."""
    if not isinstance(after, dict):
        raise unprocessable("The patch would replace the resource by something that is not a resource")
    for key in ("resourceType", "id"):
        if after.get(key) != before.get(key):
            raise unprocessable(f"A patch may not change the resource's {key} "
                                f"({before.get(key)!r} -> {after.get(key)!r})")


__all__ = ["JSON_PATCH", "PATCH_FORMATS", "apply_fhirpath_patch", "apply_json_patch", "apply_patch",
           "check_identity", "parse_json_patch"]
