"""The CapabilityStatement, generated from what the router really implements."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.model import FhirRequest, JsonDict
from fhir_server.search.registry import compartment_definitions

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter

INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                "search-type"]


def capability_statement(router: FhirRouter, req: FhirRequest) -> JsonDict:
    base = req.context.base_url.rstrip("/")
    resources = []
    for rt in sorted(router.resource_types):
        if rt in ("Resource", "DomainResource"):
            continue
        params = []
        for code, sp in sorted(router.registry.for_type(rt).items()):
            params.append({"name": code, "definition": sp.url, "type": sp.type})
        for special in ("_id", "_lastUpdated", "_text", "_content", "_list", "_has"):
            if not any(p["name"] == special for p in params):
                params.append({"name": special, "type": "special" if special in ("_text", "_content", "_list", "_has")
                               else ("token" if special == "_id" else "date")})
        entry: JsonDict = {
            "type": rt,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rt}",
            "interaction": [{"code": c} for c in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "multiple" if router.settings.allow_multiple_delete else "single",
            "referencePolicy": ["literal", "logical"],
            "searchInclude": sorted({f"{rt}:{c}" for c, sp in router.registry.for_type(rt).items()
                                     if sp.type == "reference"}) + ["*"],
            "searchRevInclude": ["*"],
            "searchParam": params,
        }
        ops = [{"name": name, "definition": op.definition or f"{base}/OperationDefinition/{name}"}
               for name, defs in sorted(router.operations.items()) for op in defs
               if op.levels & {"type", "instance"} and (op.resource_types is None or rt in op.resource_types)]
        if ops:
            entry["operation"] = ops
        resources.append(entry)
    system_ops = [{"name": name, "definition": op.definition or f"{base}/OperationDefinition/{name}"}
                  for name, defs in sorted(router.operations.items()) for op in defs if "system" in op.levels]
    rest: JsonDict = {
        "mode": "server",
        "documentation": "DigitalFront FHIR R4 server",
        "resource": resources,
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "search-system"},
                        {"code": "history-system"}],
        "searchParam": [{"name": "_type", "type": "token"}, {"name": "_id", "type": "token"},
                        {"name": "_lastUpdated", "type": "date"}],
        "compartment": [f"http://hl7.org/fhir/CompartmentDefinition/{c.lower()}"
                        for c in sorted(compartment_definitions())],
    }
    if system_ops:
        rest["operation"] = system_ops
    cs: JsonDict = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-28",
        "publisher": "DigitalFront",
        "kind": "instance",
        "software": {"name": router.settings.software_name, "version": router.settings.software_version},
        "implementation": {"description": "DigitalFront FHIR server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json", "application/fhir+xml"],
        "rest": [rest],
    }
    for extra in router.capability_extras:
        extra(cs)
    return cs
