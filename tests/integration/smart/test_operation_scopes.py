"""Operations hold the caller to its SMART scopes like the interactions do: ``$lastn`` is a search (types,
patient compartment), ``$reindex`` is maintenance (system-level scopes only), ``$extract`` persists with the
caller's own rights. Each was reachable with any valid token before. Through the router with the request
context the FHIR adapter builds from a token."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.model import FhirRequest, RequestContext

A, B = "pat-a", "pat-b"


@pytest.fixture
def services(services_factory: Any) -> Any:
    svc = services_factory(extra={"terminology_autoload": "0"})
    for pid in (A, B):
        svc.client.update({"resourceType": "Patient", "id": pid, "name": [{"family": pid}]})
        for day in (1, 2):
            svc.client.create({"resourceType": "Observation", "status": "final",
                               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                               "subject": {"reference": f"Patient/{pid}"},
                               "effectiveDateTime": f"2024-01-0{day}", "valueQuantity": {"value": 60 + day}})
    return svc


def as_token(scopes: str, patient: str | None = A) -> RequestContext:
    return RequestContext(scopes=frozenset(scopes.split()), patient=patient, client_id="app")


def call(services: Any, ctx: RequestContext, method: str, path: str, query: list[tuple[str, str]] | None = None,
         resource: dict[str, Any] | None = None) -> Any:
    return services.router.handle(FhirRequest(method, path, query or [], resource=resource, context=ctx))


def test_lastn_is_confined_like_a_search(services: Any) -> None:
    resp = call(services, as_token("launch/patient patient/Observation.rs"), "GET", "Observation/$lastn")
    assert resp.status == 200
    subjects = {e["resource"]["subject"]["reference"] for e in resp.resource["entry"]}
    assert subjects == {f"Patient/{A}"}  # unrestricted it returns B's latest too (below)
    everyone = call(services, RequestContext(), "GET", "Observation/$lastn")
    assert {e["resource"]["subject"]["reference"] for e in everyone.resource["entry"]} == {f"Patient/{A}", f"Patient/{B}"}
    denied = call(services, as_token("launch/patient patient/Patient.rs"), "GET", "Observation/$lastn")
    assert denied.status == 403 and denied.resource["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("scopes", "method", "status"), [
    ("launch/patient patient/*.cruds", "POST", 403),
    ("user/*.cruds", "POST", 403),
    ("system/*.rs", "POST", 403),
    ("system/*.rs", "GET", 200),
    ("system/Observation.u", "POST", 403),  # a system-level reindex of every type needs system/*.u
    ("system/*.cruds", "POST", 202),
])
def test_reindex_needs_system_level_scopes(services: Any, scopes: str, method: str, status: int) -> None:
    resp = call(services, as_token(scopes, patient=A if scopes.startswith("launch") else None), method, "$reindex")
    assert resp.status == status, resp.resource


def test_reindex_of_one_type_takes_that_types_system_scope(services: Any) -> None:
    assert call(services, as_token("system/Observation.u", None), "POST", "Observation/$reindex").status == 202
    assert call(services, as_token("system/Patient.u", None), "POST", "Observation/$reindex").status == 403


def test_extract_persists_with_the_callers_own_rights(services: Any) -> None:
    """Persisting writes Conditions, AllergyIntolerances ... and a Provenance naming them: a read-only grant is
    403, and so is a patient-level grant (the Provenance's targets are not the patient, so it is outside the
    patient's compartment, the same rule as any Provenance a patient app writes); a clinician's write grant
    persists it."""
    from nlp.web import init_app

    init_app(None, services)

    def extract(ctx: RequestContext, patient: str = A) -> Any:
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "text", "valueString": "History of hypertension. Allergies: penicillin (hives)."},
            {"name": "patient", "valueString": f"Patient/{patient}"},
            {"name": "persist", "valueBoolean": True}]}
        return call(services, ctx, "POST", "$extract", resource=body)

    clinician = "Practitioner/dr-1"
    assert extract(as_token("launch/patient patient/*.rs")).status == 403
    assert extract(as_token("launch/patient patient/*.cruds"), B).status == 403
    assert extract(RequestContext(scopes=frozenset({"user/*.rs"}), fhir_user=clinician)).status == 403
    assert services.client.search("Condition", {}) == []
    done = extract(RequestContext(scopes=frozenset({"user/*.cruds"}), fhir_user=clinician))
    assert done.status == 200, done.resource
    conditions = services.client.search("Condition", {})
    assert conditions and {c["subject"]["reference"] for c in conditions} == {f"Patient/{A}"}
