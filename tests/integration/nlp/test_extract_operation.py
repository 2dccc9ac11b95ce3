"""$extract through the real router (SQLite), persistence idempotency and the after-commit subscriber."""

from __future__ import annotations

import base64

import pytest

from fhir_server.client import LocalFhirClient
from nlp.fhir_mapping import SOURCE_TAG_SYSTEM

NOTE = (
    "HPI: 58 yo M with history of hypertension presents with chest pain. Denies shortness of breath.\n"
    "Allergies: penicillin (hives).\n"
    "Family History: Mother with breast cancer.\n"
    "Medications: metformin 500 mg BID.\n"
)


def _app(services_factory, **kw):
    """Core services plus only this plugin (other plugins are tested in their own areas)."""
    from nlp.web import init_app

    svc = services_factory(**kw)
    init_app(None, svc)
    return None, svc


def _note(client: LocalFhirClient, patient_id: str, text: str = NOTE) -> dict:
    return client.create({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": f"Patient/{patient_id}"},
        "content": [{"attachment": {"contentType": "text/plain",
                                    "data": base64.b64encode(text.encode()).decode()}}],
    })


def _types(bundle: dict) -> list[str]:
    return sorted(e["resource"]["resourceType"] for e in bundle["entry"])


def test_system_extract_returns_bundle(services_factory):
    app, svc = _app(services_factory)
    out = svc.client.operation("$extract", {"resourceType": "Parameters", "parameter": [
        {"name": "text", "valueString": NOTE}]})
    assert out["type"] == "collection"
    assert _types(out) == ["AllergyIntolerance", "Condition", "Condition", "Condition", "FamilyMemberHistory",
                           "MedicationStatement", "Provenance"]


def test_system_extract_rejects_bad_input(services_factory):
    from fhir_server.errors import OperationOutcomeError

    app, svc = _app(services_factory)
    with pytest.raises(OperationOutcomeError) as e:
        svc.client.operation("$extract", {"resourceType": "Parameters", "parameter": []})
    assert e.value.status == 400
    with pytest.raises(OperationOutcomeError) as e:
        svc.client.operation("$extract", {"resourceType": "Parameters", "parameter": [
            {"name": "text", "valueString": "chest pain"}, {"name": "persist", "valueBoolean": True}]})
    assert e.value.status == 400


def test_instance_extract_persist_is_idempotent(services_factory):
    app, svc = _app(services_factory)
    client = svc.client
    patient = client.create({"resourceType": "Patient", "name": [{"family": "Nlp"}]})
    note = _note(client, patient["id"])
    path = f"DocumentReference/{note['id']}/$extract"
    params = {"resourceType": "Parameters", "parameter": [{"name": "persist", "valueBoolean": True}]}
    client.operation(path, params)
    tag = [("_tag", f"{SOURCE_TAG_SYSTEM}|DocumentReference/{note['id']}")]
    first = {t: len(client.search(t, tag)) for t in ("Condition", "AllergyIntolerance", "Provenance")}
    assert first == {"Condition": 3, "AllergyIntolerance": 1, "Provenance": 1}
    client.operation(path, params)
    second = {t: len(client.search(t, tag)) for t in ("Condition", "AllergyIntolerance", "Provenance")}
    assert second == first
    conds = client.search("Condition", [("patient", f"Patient/{patient['id']}")])
    refuted = [c for c in conds if c["verificationStatus"]["coding"][0]["code"] == "refuted"]
    assert [c["code"]["text"] for c in refuted] == ["Dyspnea"]
    fmh = client.search("FamilyMemberHistory", tag)
    assert fmh[0]["relationship"]["coding"][0]["code"] == "MTH"


def test_instance_extract_without_text_is_422(services_factory):
    from fhir_server.errors import OperationOutcomeError

    app, svc = _app(services_factory)
    note = svc.client.create({"resourceType": "DocumentReference", "status": "current",
                              "content": [{"attachment": {"contentType": "application/pdf", "url": "http://x/y.pdf"}}]})
    with pytest.raises(OperationOutcomeError) as e:
        svc.client.operation(f"DocumentReference/{note['id']}/$extract", {"resourceType": "Parameters"})
    assert e.value.status == 422


def test_subscriber_processes_new_notes(services_factory):
    app, svc = _app(services_factory, nlp_on_write=True)
    client = svc.client
    patient = client.create({"resourceType": "Patient"})
    note = _note(client, patient["id"], "Assessment: community acquired pneumonia. Start azithromycin.")
    worker = svc.extras["nlp_worker"]
    worker.join()
    tag = [("_tag", f"{SOURCE_TAG_SYSTEM}|DocumentReference/{note['id']}")]
    assert [c["code"]["text"] for c in client.search("Condition", tag)] == ["Pneumonia"]
    client.update({**client.read("DocumentReference", note["id"])})
    worker.join()
    assert len(client.search("Condition", tag)) == 1
    assert worker.failed == 0
