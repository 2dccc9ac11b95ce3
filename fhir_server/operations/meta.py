"""``$meta``, ``$meta-add`` and ``$meta-delete`` (FHIR R4 Resource operations): tags, security labels, profiles.

``$meta`` answers a resource's meta at the instance level, and the tags, security labels and profiles in use
at the type and system levels. ``$meta-add``/``$meta-delete`` change the current version's meta in place:
as their OperationDefinitions say, no new version is created (versionId and lastUpdated stay), and the
resource's ``_tag``/``_security``/``_profile`` index rows follow. Tags and security labels are sets keyed
by system + code (version and display are ignored when matching), profiles by URL. Version-level calls
(``/_history/{vid}/$meta-add``) are not routed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_server import authz
from fhir_server.errors import bad_request
from fhir_server.interactions.common import request_resource
from fhir_server.model import FhirRequest, FhirResponse, JsonDict
from fhir_server.operations.parameters import parameters_of

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter

SETS = ("profile", "security", "tag")  # the parts of Meta these operations work on


def _returned(meta: JsonDict) -> FhirResponse:
    shown = {k: meta[k] for k in SETS if meta.get(k)}
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": shown}]})


def _key(element: str, item: Any) -> Any:
    if element == "profile":
        return item
    return (item.get("system"), item.get("code")) if isinstance(item, dict) else None


def _meta_in(req: FhirRequest, operation: str) -> JsonDict:
    body = request_resource(req)
    metas = [p.get("valueMeta") for p in parameters_of(body, operation) if p["name"] == "meta"]
    if len(metas) != 1 or not isinstance(metas[0], dict):
        raise bad_request("The body must be a Parameters resource with one 'meta' parameter (valueMeta)",
                          code="required")
    meta: JsonDict = metas[0]
    for element in SETS:
        items = meta.get(element, [])
        if not isinstance(items, list) or any(_key(element, i) in (None, (None, None)) or
                                              (element == "profile" and not isinstance(i, str)) for i in items):
            raise bad_request(f"meta.{element} must be a list of "
                              + ("canonical URLs" if element == "profile" else "codings with a system or code"),
                              expression=[f"Parameters.parameter.valueMeta.{element}"])
    return meta


def meta(router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
    if id is not None and resource_type is not None:
        authz.check_interaction(req.context, "read", resource_type)
        stored = router.repo.read(resource_type, id)
        authz.check_resource(req.context, "read", stored.resource or {})
        return _returned((stored.resource or {}).get("meta") or {})
    authz.check_interaction(req.context, "search", resource_type)
    return _returned(router.repo.meta_in_use([resource_type] if resource_type else None))


def _change(router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None,
            edit: Callable[[list[Any], list[Any], str], list[Any]], operation: str) -> FhirResponse:
    assert resource_type is not None and id is not None  # registered at the instance level only
    given = _meta_in(req, operation)
    authz.check_interaction(req.context, "update", resource_type)

    def change(resource: JsonDict) -> JsonDict:
        authz.check_resource(req.context, "update", resource)  # the very row the write changes
        meta = dict(resource.get("meta") or {})
        out = dict(meta)
        for element in SETS:
            items = edit(list(meta.get(element) or []), list(given.get(element) or []), element)
            if items:
                out[element] = items
            else:
                out.pop(element, None)
        return out

    stored = router.repo.replace_meta(resource_type, id, change)
    return _returned((stored.resource or {}).get("meta") or {})


def _added(have: list[Any], given: list[Any], element: str) -> list[Any]:
    keys = {_key(element, i) for i in have}
    for item in given:
        if _key(element, item) not in keys:
            have.append(item)
            keys.add(_key(element, item))
    return have


def _removed(have: list[Any], given: list[Any], element: str) -> list[Any]:
    gone = {_key(element, i) for i in given}
    return [i for i in have if _key(element, i) not in gone]


def meta_add(router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
    return _change(router, req, resource_type, id, _added, "$meta-add")


def meta_delete(router: FhirRouter, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
    return _change(router, req, resource_type, id, _removed, "$meta-delete")
