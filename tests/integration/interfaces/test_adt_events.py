"""ADT events and segments through the real pipeline and storage, built from the IG's ADT_A01 sample.

Each message is the v2-to-FHIR IG's own ADT_A01 sample with the trigger event (MSH-9 without a structure,
so the structure is derived from the event, as from senders that leave MSH-9.3 empty), the control id and
the PV1 fields an event changes replaced, plus the DG1/PR1 segments the sample lacks. Expected Encounter
statuses are read from the IG's Event[EncounterStatus] ConceptMap in ../shared, not restated here.
"""

from __future__ import annotations

import csv
from typing import Any

import pytest

from tests.unit.interfaces.hl7_testkit import IG, ig_messages, ingest_ok

VISIT = "81456267"  # the sample's PV1-19
DG1_CODED = "DG1|1||J45.909^Unspecified asthma, uncomplicated^I10||20150601|F"
DG1_TEXT_ONLY = "DG1|2|||Chest pain on exertion|20150601|W"
PR1_CODED = "PR1|1||0BH17EZ^Insertion of Endotracheal Airway into Trachea^ICD10PCS||20150601140000"


def ig_concept_map(name: str) -> dict[str, tuple[str, str]]:
    """v2 code -> (FHIR code, system) from one of the IG's ConceptMap sheets (two header rows first)."""
    path = IG / "mappings" / "codesystems" / f"HL7 Concept Map_ {name} - Sheet1.csv"
    if not path.exists():
        pytest.skip(f"IG ConceptMap not found at {path}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[2:]
    return {r[0]: (r[6], r[9]) for r in rows if len(r) > 9 and r[0] and r[6]}


def ig_event_status() -> dict[str, str]:
    """Trigger event -> Encounter.status, from the IG's Event[EncounterStatus] ConceptMap."""
    return {event: code for event, (code, _system) in ig_concept_map("Event[EncounterStatus]").items()}


def _set(fields: list[str], index: int, value: str) -> None:
    fields.extend([""] * (index + 1 - len(fields)))
    fields[index] = value


def ig_adt(event: str, control_id: str, *, patient_class: str | None = None, location: str | None = None,
           admitted: str | None = None, discharged: str = "", family: str | None = None,
           extra: tuple[str, ...] = ()) -> bytes:
    """The IG's ADT_A01 sample as ``event``; PV1-2/3/44/45 and PID-5's family name when given."""
    segments = [s.split("|") for s in ig_messages()["ADT_A01"].split("\r") if s]
    for seg in segments:
        if seg[0] == "MSH":
            seg[8], seg[9] = f"ADT^{event}", control_id
        elif seg[0] == "EVN":
            seg[1] = event
        elif seg[0] == "PID" and family is not None:
            seg[5] = family + seg[5][seg[5].index("^"):]
        elif seg[0] == "PV1":
            if patient_class is not None:
                _set(seg, 2, patient_class)
            if location is not None:
                _set(seg, 3, location)
            if admitted is not None:
                _set(seg, 44, admitted)
            _set(seg, 45, discharged)
    return ("\r".join("|".join(s) for s in segments) + "\r" + "".join(x + "\r" for x in extra)).encode()


@pytest.fixture
def services(services_factory: Any) -> Any:
    return services_factory(hl7_workers=0)  # SQLite; the writer maps


def the_encounter(services: Any) -> dict[str, Any]:
    found = services.client.search("Encounter", {"identifier": VISIT})
    assert len(found) == 1, found  # every event updates the one visit (PV1-19), none adds another
    enc: dict[str, Any] = found[0]
    return enc


def test_a_visit_from_pre_admit_to_cancelled_discharge_follows_the_ig_event_map(services: Any) -> None:
    """A05 pre-admit, A01 admit, A02 transfer, A03 discharge, A13 cancel discharge: one Encounter, its status
    each time the IG's Event[EncounterStatus] target; the transfer moves its location, the discharge ends it."""
    status = ig_event_status()
    ingest_ok(services, ig_adt("A05", "e1", admitted=""))
    assert the_encounter(services)["status"] == status["A05"] == "planned"
    ingest_ok(services, ig_adt("A01", "e2"))
    assert the_encounter(services)["status"] == status["A01"]
    ingest_ok(services, ig_adt("A02", "e3", location="WARD^202^01^^^^^^^^DEPID"))
    enc = the_encounter(services)
    assert enc["status"] == status["A02"]
    assert enc["location"][0]["location"]["display"] == "WARD 202 01"
    ingest_ok(services, ig_adt("A03", "e4", discharged="20150603101500+0100"))
    enc = the_encounter(services)
    assert enc["status"] == status["A03"] == "finished"
    assert enc["period"]["end"] == "2015-06-03T10:15:00+01:00"
    assert enc["location"][0]["status"] == "completed"
    ingest_ok(services, ig_adt("A13", "e5"))  # the discharge is withdrawn: open again, no end
    enc = the_encounter(services)
    assert enc["status"] == status["A13"] == "in-progress"
    assert "end" not in enc.get("period", {})


@pytest.mark.parametrize("event", ["A04", "A11"])
def test_register_and_cancel_admit_take_the_ig_status(services: Any, event: str) -> None:
    ingest_ok(services, ig_adt(event, f"r-{event}"))
    assert the_encounter(services)["status"] == ig_event_status()[event]


def test_a06_changes_the_class_and_keeps_the_state_pv1_carries(services: Any) -> None:
    """A06 (outpatient to inpatient) is not in the IG's event map: the class follows PV1-2, the status what
    PV1-44/45 say (admitted, not discharged: in progress), never "unknown" for a visit that is under way."""
    ingest_ok(services, ig_adt("A04", "c1", patient_class="O^Outpatient^HL70004"))
    assert the_encounter(services)["class"]["code"] == "AMB"
    ingest_ok(services, ig_adt("A06", "c2", patient_class="I^Inpatient^HL70004", admitted="20150601140000"))
    enc = the_encounter(services)
    assert enc["class"]["code"] == "IMP"
    assert enc["status"] == "in-progress"


def test_a28_and_a31_write_the_person_and_no_visit(services: Any) -> None:
    """Person information events carry PV1 (the sample's) but are about the person: the Patient is created,
    then updated in place, and no Encounter is written."""
    ingest_ok(services, ig_adt("A28", "p1"))
    patients = services.client.search("Patient", {"identifier": "1032702"})
    assert len(patients) == 1 and patients[0]["name"][0]["family"] == "Everywoman"
    ingest_ok(services, ig_adt("A31", "p2", family="Everyperson"))
    after = services.client.search("Patient", {"identifier": "1032702"})
    assert [p["id"] for p in after] == [patients[0]["id"]]
    assert after[0]["name"][0]["family"] == "Everyperson"
    assert services.client.search("Encounter", {}) == []


def test_dg1_and_pr1_become_conditions_and_a_procedure_of_the_visit(services: Any) -> None:
    """DG1 -> Condition (encounter diagnosis; DG1-6 F confirmed, W provisional; a description without a code
    kept as text), PR1 -> Procedure (completed, PR1-5 performed), each referring to the patient and visit;
    re-sent, the same ADT updates them instead of adding more."""
    message = ig_adt("A01", "d1", extra=(DG1_CODED, DG1_TEXT_ONLY, PR1_CODED))
    ingest_ok(services, message)
    patient = services.client.search("Patient", {"identifier": "1032702"})[0]
    encounter = the_encounter(services)
    conditions = {(c["code"].get("coding") or [{}])[0].get("code") or c["code"]["text"]: c
                  for c in services.client.search("Condition", {})}
    assert set(conditions) == {"J45.909", "Chest pain on exertion"}
    coded, described = conditions["J45.909"], conditions["Chest pain on exertion"]
    assert coded["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"
    assert coded["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert described["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert described["code"] == {"text": "Chest pain on exertion"}
    for c in conditions.values():
        assert c["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
        assert c["subject"]["reference"] == f"Patient/{patient['id']}"
        assert c["encounter"]["reference"] == f"Encounter/{encounter['id']}"
        assert c["onsetDateTime"] == "2015-06-01"
    [procedure] = services.client.search("Procedure", {})
    assert procedure["status"] == "completed"
    assert procedure["code"]["coding"][0]["code"] == "0BH17EZ"
    assert procedure["performedDateTime"].startswith("2015-06-01T14:00:00")
    assert procedure["subject"]["reference"] == f"Patient/{patient['id']}"
    assert procedure["encounter"]["reference"] == f"Encounter/{encounter['id']}"
    # the sample's own AL1, IN1 and NK1 ride along: an allergy, a coverage, a contact
    [allergy] = services.client.search("AllergyIntolerance", {})
    assert allergy["patient"]["reference"] == f"Patient/{patient['id']}"
    [coverage] = services.client.search("Coverage", {})
    code, system = ig_concept_map("Relationship")["SEL"]  # IN1-17 through the IG's ConceptMap
    coding = coverage["relationship"]["coding"][0]
    assert (coding["system"], coding["code"]) == (system, code)
    assert patient["contact"][0]["name"]["family"] == "Everyone"
    # the same message again under a new control id: applied again, nothing duplicated
    ingest_ok(services, message.replace(b"|d1|", b"|d2|", 1))
    assert len(services.client.search("Condition", {})) == 2
    assert len(services.client.search("Procedure", {})) == 1
    assert len(services.client.search("AllergyIntolerance", {})) == 1
