"""$extract over real HTTP: the full app (create_app with every plugin) behind a real WSGI server,
persistence idempotency, errors as OperationOutcomes, and the after-commit subscriber."""

from __future__ import annotations

import base64
from typing import Any

import requests

from nlp.fhir_mapping import SOURCE_TAG_SYSTEM

NOTE = (
    "HPI: 58 yo M with history of hypertension presents with chest pain. Denies shortness of breath.\n"
    "Allergies: penicillin (hives).\n"
    "Family History: Mother with breast cancer.\n"
    "Medications: metformin 500 mg BID.\n"
)
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
# the core terminology load is not needed here; it would only compete for the CPU
NO_TX = {"extra": {"terminology_autoload": "0"}}


def _post(url: str, body: dict[str, Any] | None = None, expect: int = 200, **params: str) -> dict[str, Any]:
    r = requests.post(url, json=body, params=params, headers=FHIR_JSON, timeout=60)
    assert r.status_code == expect, r.text
    out: dict[str, Any] = r.json()
    if expect >= 400:
        assert out["resourceType"] == "OperationOutcome" and out["issue"][0]["severity"] == "error"
    return out


def _search(base: str, rtype: str, **params: str) -> list[dict[str, Any]]:
    r = requests.get(f"{base}/{rtype}", params=params, headers=FHIR_JSON, timeout=30)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


def _note(base: str, patient_id: str, text: str = NOTE) -> dict[str, Any]:
    return _post(f"{base}/DocumentReference", {
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": f"Patient/{patient_id}"},
        "content": [{"attachment": {"contentType": "text/plain",
                                    "data": base64.b64encode(text.encode()).decode()}}],
    }, expect=201)


def _types(bundle: dict[str, Any]) -> list[str]:
    return sorted(e["resource"]["resourceType"] for e in bundle["entry"])


def test_system_extract_over_http(live_server_factory):
    live = live_server_factory(**NO_TX)
    out = _post(f"{live.base}/$extract", {"resourceType": "Parameters", "parameter": [
        {"name": "text", "valueString": NOTE}]})
    assert out["resourceType"] == "Bundle" and out["type"] == "collection"
    assert _types(out) == ["AllergyIntolerance", "Condition", "Condition", "Condition", "FamilyMemberHistory",
                           "MedicationStatement", "Provenance"]
    dyspnea = [e["resource"] for e in out["entry"] if e["resource"].get("code", {}).get("text") == "Dyspnea"]
    assert dyspnea[0]["verificationStatus"]["coding"][0]["code"] == "refuted"
    # a raw text/plain body works too
    r = requests.post(f"{live.base}/$extract", data=b"History of asthma.",
                      headers={"Content-Type": "text/plain", "Accept": "application/fhir+json"}, timeout=60)
    assert r.status_code == 200, r.text
    assert [e["resource"]["code"]["text"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "Condition"] \
        == ["Asthma"]


def test_system_extract_rejects_bad_input_over_http(live_server_factory):
    live = live_server_factory(**NO_TX)
    url = f"{live.base}/$extract"
    _post(url, {"resourceType": "Parameters", "parameter": []}, expect=400)
    _post(url, {"resourceType": "Parameters", "parameter": [
        {"name": "text", "valueString": "chest pain"}, {"name": "persist", "valueBoolean": True}]}, expect=400)
    _post(url, {"resourceType": "Parameters", "parameter": [
        {"name": "text", "valueString": "chest pain"}, {"name": "patient", "valueString": "Practitioner/1"}]},
        expect=400)
    _post(url, {"resourceType": "Patient"}, expect=400)
    r = requests.post(url, data=b"{not json", headers=FHIR_JSON, timeout=30)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = requests.post(url, data=b"%PDF-1.4", headers={"Content-Type": "application/pdf"}, timeout=30)
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"


def test_instance_extract_persist_is_idempotent_over_http(live_server):
    base = live_server.base
    patient = _post(f"{base}/Patient", {"resourceType": "Patient", "name": [{"family": "Nlp"}]}, expect=201)
    note = _note(base, patient["id"])
    url = f"{base}/DocumentReference/{note['id']}/$extract"
    tag = f"{SOURCE_TAG_SYSTEM}|DocumentReference/{note['id']}"

    resp = _post(url, None, persist="true")  # persist as a query parameter, no body
    assert resp["type"] == "transaction-response"
    assert all(e["response"]["status"].startswith("201") for e in resp["entry"])
    # the written resources' URLs use the base the client called (they said http://localhost:8080)
    assert all(e["fullUrl"].startswith(base + "/") and e["response"]["location"].startswith(base + "/")
               for e in resp["entry"]), resp["entry"][0]
    first = {t: len(_search(base, t, _tag=tag)) for t in ("Condition", "AllergyIntolerance", "Provenance")}
    assert first == {"Condition": 3, "AllergyIntolerance": 1, "Provenance": 1}

    again = _post(url, {"resourceType": "Parameters", "parameter": [{"name": "persist", "valueBoolean": True}]})
    assert again["type"] == "transaction-response"  # persist given in the Parameters body this time
    second = {t: len(_search(base, t, _tag=tag)) for t in ("Condition", "AllergyIntolerance", "Provenance")}
    assert second == first  # re-running replaces the earlier output

    conds = _search(base, "Condition", patient=f"Patient/{patient['id']}")
    refuted = [c for c in conds if c["verificationStatus"]["coding"][0]["code"] == "refuted"]
    assert [c["code"]["text"] for c in refuted] == ["Dyspnea"]
    assert all(c["subject"]["reference"] == f"Patient/{patient['id']}" for c in conds)
    fmh = _search(base, "FamilyMemberHistory", _tag=tag)
    assert fmh[0]["relationship"]["coding"][0]["code"] == "MTH"
    prov = _search(base, "Provenance", _tag=tag)[0]
    assert prov["entity"][0]["what"]["reference"] == f"DocumentReference/{note['id']}"
    assert len(prov["target"]) == sum(first.values()) - 1 + 2  # 3 Conditions, 1 allergy, FMH, MedicationStatement

    # without persist the instance call only returns the Bundle and writes nothing more
    preview = _post(url, {"resourceType": "Parameters"})
    assert preview["type"] == "collection"
    assert len(_search(base, "Condition", _tag=tag)) == 3


def test_instance_extract_errors_over_http(live_server_factory):
    live = live_server_factory(**NO_TX)
    note = _post(f"{live.base}/DocumentReference", {
        "resourceType": "DocumentReference", "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf", "url": "http://x/y.pdf"}}]}, expect=201)
    _post(f"{live.base}/DocumentReference/{note['id']}/$extract", {"resourceType": "Parameters"}, expect=422)
    _post(f"{live.base}/DocumentReference/does-not-exist/$extract", {"resourceType": "Parameters"}, expect=404)


def test_subscriber_processes_new_notes(live_server_factory):
    live = live_server_factory(nlp_on_write=True, **NO_TX)
    base = live.base
    worker = live.services.extras["nlp_worker"]
    patient = _post(f"{base}/Patient", {"resourceType": "Patient"}, expect=201)
    note = _note(base, patient["id"], "Assessment: community acquired pneumonia. Start azithromycin.")
    worker.join()
    tag = f"{SOURCE_TAG_SYSTEM}|DocumentReference/{note['id']}"
    assert [c["code"]["text"] for c in _search(base, "Condition", _tag=tag)] == ["Pneumonia"]
    r = requests.put(f"{base}/DocumentReference/{note['id']}", json=note, headers=FHIR_JSON, timeout=30)
    assert r.status_code == 200, r.text
    worker.join()
    assert len(_search(base, "Condition", _tag=tag)) == 1
    assert worker.failed == 0


def test_diagnostic_report_text_from_a_binary_over_http(live_server):
    """DiagnosticReport/{id}/$extract reads presentedForm, here a url to a Binary the server holds (the note's
    text is not inline); the output cites the report as its source."""
    base = live_server.base
    patient = _post(f"{base}/Patient", {"resourceType": "Patient", "name": [{"family": "Report"}]}, expect=201)
    text = "Impression: findings consistent with pneumonia. No pleural effusion.\n"
    binary = _post(f"{base}/Binary", {"resourceType": "Binary", "contentType": "text/plain",
                                      "data": base64.b64encode(text.encode()).decode()}, expect=201)
    report = _post(f"{base}/DiagnosticReport", {
        "resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Chest X-ray report"},
        "subject": {"reference": f"Patient/{patient['id']}"},
        "presentedForm": [{"contentType": "text/plain", "url": f"Binary/{binary['id']}"}]}, expect=201)
    out = _post(f"{base}/DiagnosticReport/{report['id']}/$extract", {"resourceType": "Parameters"})
    by_text = {e["resource"]["code"]["text"]: e["resource"] for e in out["entry"] if "code" in e["resource"]}
    pneumonia, effusion = by_text["Pneumonia"], by_text["Pleural effusion"]
    assert pneumonia["resourceType"] == "Condition"
    assert pneumonia["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert pneumonia["subject"]["reference"] == f"Patient/{patient['id']}"
    assert effusion["resourceType"] == "Observation" and effusion["valueBoolean"] is False  # a finding, absent
    [prov] = [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Provenance"]
    assert prov["entity"][0]["what"]["reference"] == f"DiagnosticReport/{report['id']}"
