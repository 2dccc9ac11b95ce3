"""discharge-readiness: pending results, follow-up appointment, medication reconciliation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cds_hooks.cards import check_response
from tests.unit.cds_hooks.cds_testutil import hook_request, iso

URL = "/cds-services/discharge-readiness"
CAT = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"


def setup(cds: Any) -> None:
    mem = cds.mem
    mem.put({"resourceType": "Patient", "id": "p1"})
    mem.put({"resourceType": "Encounter", "id": "e1", "status": "in-progress", "class": {"code": "IMP"},
             "subject": {"reference": "Patient/p1"}, "period": {"start": iso(-timedelta(days=4))}})


def call(cds: Any) -> list[dict[str, Any]]:
    req = hook_request("encounter-discharge", "p1", encounterId="e1") | {"fhirServer": "http://localhost/fhir"}
    r = cds.post(URL, req)
    assert r.status_code == 200, r.get_json()
    assert check_response(r.get_json()) == []
    return r.get_json()["cards"]


def test_every_gap_fires(cds: Any) -> None:
    setup(cds)
    cds.mem.put({"resourceType": "DiagnosticReport", "id": "r1", "status": "preliminary",
                 "code": {"text": "Blood culture"}, "subject": {"reference": "Patient/p1"},
                 "encounter": {"reference": "Encounter/e1"}})
    cds.mem.put({"resourceType": "ServiceRequest", "id": "s1", "status": "active", "intent": "order",
                 "code": {"text": "CT abdomen"}, "subject": {"reference": "Patient/p1"},
                 "encounter": {"reference": "Encounter/e1"}})
    cds.mem.put({"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
                 "category": [{"coding": [{"system": CAT, "code": "inpatient"}]}],
                 "medicationCodeableConcept": {"text": "Heparin 5000 units SC q8h"},
                 "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"}})
    pending, follow, medrec = call(cds)
    assert pending["summary"] == "2 result(s) pending at discharge"
    assert "Blood culture (preliminary)" in pending["detail"] and "CT abdomen (ordered, no result)" in pending["detail"]
    assert follow["summary"] == "No follow-up appointment after discharge"
    appt = follow["suggestions"][0]["actions"][0]["resource"]
    assert appt["resourceType"] == "Appointment" and appt["participant"][0]["actor"] == {"reference": "Patient/p1"}
    assert medrec["suggestions"][0]["actions"][0]["resource"]["status"] == "stopped"
    assert "No discharge medication list" in medrec["detail"]


def test_ready_patient_gets_no_card(cds: Any) -> None:
    setup(cds)
    cds.mem.put({"resourceType": "DiagnosticReport", "id": "r1", "status": "final", "code": {"text": "CBC"},
                 "subject": {"reference": "Patient/p1"}, "basedOn": [{"reference": "ServiceRequest/s1"}],
                 "encounter": {"reference": "Encounter/e1"}})
    cds.mem.put({"resourceType": "ServiceRequest", "id": "s1", "status": "active", "intent": "order",
                 "code": {"text": "CBC"}, "subject": {"reference": "Patient/p1"},
                 "encounter": {"reference": "Encounter/e1"}})
    cds.mem.put({"resourceType": "Appointment", "id": "a1", "status": "booked", "start": iso(timedelta(days=5)),
                 "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]})
    cds.mem.put({"resourceType": "MedicationRequest", "id": "m2", "status": "active", "intent": "order",
                 "category": [{"coding": [{"system": CAT, "code": "discharge"}]}],
                 "medicationCodeableConcept": {"text": "Apixaban 5 mg"}, "subject": {"reference": "Patient/p1"},
                 "encounter": {"reference": "Encounter/e1"}})
    assert call(cds) == []


def test_past_appointment_does_not_count_and_missing_encounter_is_412(cds: Any) -> None:
    setup(cds)
    cds.mem.put({"resourceType": "Appointment", "id": "a0", "status": "booked", "start": iso(-timedelta(days=9)),
                 "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]})
    assert [c["summary"] for c in call(cds)] == ["No follow-up appointment after discharge"]
    req = hook_request("encounter-discharge", "p1", encounterId="nope") | {"fhirServer": "http://localhost/fhir"}
    assert cds.post(URL, req).status_code == 412
