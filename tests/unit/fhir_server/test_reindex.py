"""Custom SearchParameters: usable after $reindex, which runs in the background and reports progress."""

from __future__ import annotations

import time
from typing import Any

from fhir_server.model import FhirRequest

BIRTHPLACE = {
    "resourceType": "SearchParameter", "id": "patient-birthplace-city", "status": "active",
    "url": "http://example.org/fhir/SearchParameter/patient-birthplace-city", "name": "birthplace-city",
    "code": "birthplace-city", "base": ["Patient"], "type": "string",
    "description": "City of the patient's birthplace extension",
    "expression": "Patient.extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value.city",
}


def patient(city: str) -> dict:
    return {"resourceType": "Patient", "name": [{"family": city}], "extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": city}}]}


def get(svc: Any, path: str, query: list | None = None) -> Any:
    return svc.router.handle(FhirRequest("GET", path, query or []))


def test_custom_parameter_after_reindex(services: Any) -> None:
    svc = services
    for city in ("Boston", "Bern", "Boston"):
        svc.router.handle(FhirRequest("POST", "Patient", resource=patient(city)))
    assert get(svc, "Patient", [("birthplace-city", "boston")]).status == 400  # unknown before it exists
    created = svc.router.handle(FhirRequest("PUT", "SearchParameter/patient-birthplace-city", resource=BIRTHPLACE))
    assert created.status == 201, created.resource
    # registered at once, but the existing resources have no rows for it until $reindex
    assert get(svc, "Patient", [("birthplace-city", "boston")]).resource.get("total", 0) == 0

    kick = svc.router.handle(FhirRequest("POST", "Patient/$reindex"))
    assert kick.status == 202
    status_url = kick.headers["Content-Location"]
    job = status_url.split("job=")[1]
    # reads and writes go on while it runs
    assert svc.router.handle(FhirRequest("POST", "Patient", resource=patient("Boston"))).status == 201
    for _ in range(200):
        params = {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                  for p in get(svc, "$reindex", [("job", job)]).resource["parameter"]}
        if params["status"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    assert params["status"] == "completed", params
    assert params["progress"] >= 3
    found = get(svc, "Patient", [("birthplace-city", "boston")]).resource
    assert found["total"] == 3  # two reindexed + one written after the parameter existed
    assert {e["resource"]["name"][0]["family"] for e in found["entry"]} == {"Boston"}
    assert get(svc, "Patient", [("birthplace-city:exact", "Bern")]).resource["total"] == 1
