"""Mentions -> FHIR: statuses, FamilyMemberHistory, evidence spans, Provenance, and R4 validity."""

from __future__ import annotations

import pytest

from nlp.fhir_mapping import EVIDENCE_URL, resources_of, to_bundle

NOTE = ("HPI: history of hypertension, denies chest pain, possible pneumonia. A1c 8.2% today.\n"
        "Allergies: penicillin (hives).\nFamily History: Maternal grandmother with breast cancer.\n"
        "Meds: metformin 500 mg BID. Stopped lisinopril. Return if fever.\nPSH: appendectomy.\n"
        "Exam: crackles at the bases.")


@pytest.fixture(scope="module")
def bundle(request):
    from nlp.pipeline import ClinicalNlp

    nlp = ClinicalNlp()
    return to_bundle(nlp.extract(NOTE), "Patient/p1", "DocumentReference/d1", text=NOTE,
                     recorded="2024-05-01T10:00:00+00:00", bundle_type="transaction")


def by_text(resources, text):
    return next(r for r in resources if (r.get("code") or r.get("medicationCodeableConcept"))["text"] == text)


def test_condition_statuses(bundle):
    conds = resources_of(bundle, "Condition")
    htn = by_text(conds, "Hypertension")
    assert htn["clinicalStatus"]["coding"][0]["code"] == "inactive"
    assert htn["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert by_text(conds, "Chest pain")["verificationStatus"]["coding"][0]["code"] == "refuted"
    assert by_text(conds, "Pneumonia")["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert not any(c["code"]["text"] == "Fever" for c in conds)  # hypothetical left out
    assert not any(c["code"]["text"] == "Malignant neoplasm of breast" for c in conds)  # family, not patient


def test_clinical_status_by_what_the_note_says_of_the_past() -> None:
    """Historical and stated resolved -> resolved; historical alone -> inactive; current -> active."""
    from nlp.pipeline import shared_pipeline

    text = "Prior pneumonia, resolved. History of asthma. Currently has hypertension."
    conds = resources_of(to_bundle(shared_pipeline().extract(text), "Patient/p1", "DocumentReference/d2", text=text),
                         "Condition")
    status = {c["code"]["text"]: c["clinicalStatus"]["coding"][0]["code"] for c in conds}
    assert status == {"Pneumonia": "resolved", "Asthma": "inactive", "Hypertension": "active"}


def test_other_resource_types(bundle):
    meds = resources_of(bundle, "MedicationStatement")
    assert by_text(meds, "Metformin")["status"] == "active"
    assert by_text(meds, "Lisinopril")["status"] == "completed"
    allergy = resources_of(bundle, "AllergyIntolerance")[0]
    assert allergy["code"]["coding"][0]["code"] == "70618"
    assert allergy["reaction"][0]["manifestation"][0]["coding"][0]["code"] == "271807003"
    fmh = resources_of(bundle, "FamilyMemberHistory")[0]
    assert fmh["relationship"]["coding"][0]["code"] == "MGRMTH"
    assert resources_of(bundle, "Procedure")[0]["status"] == "completed"
    obs = resources_of(bundle, "Observation")
    assert by_text(obs, "Hemoglobin A1c")["valueQuantity"] == {"value": 8.2, "unit": "%"}
    assert by_text(obs, "Crackles")["valueBoolean"] is True


def test_evidence_and_provenance(bundle):
    for e in bundle["entry"]:
        res = e["resource"]
        assert e["request"] == {"method": "POST", "url": res["resourceType"]}
        if res["resourceType"] == "Provenance":
            continue
        ev = [x for x in res["extension"] if x["url"] == EVIDENCE_URL]
        assert ev
        parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ev[0]["extension"]}
        assert NOTE[parts["start"]:parts["end"]] == parts["text"]
        assert parts["document"] == {"reference": "DocumentReference/d1"}
    prov = resources_of(bundle, "Provenance")[0]
    assert len(prov["target"]) == len(bundle["entry"]) - 1
    assert prov["entity"][0]["what"]["reference"] == "DocumentReference/d1"
    assert "digitalfront-clinical-rules@" in prov["policy"][0]
    assert "medspacy" in prov["agent"][0]["who"]["display"]


def test_resources_validate_against_r4_models(bundle):
    from fhir.resources.R4B import get_fhir_model_class

    for e in bundle["entry"]:
        res = e["resource"]
        cls = get_fhir_model_class(res["resourceType"])
        try:
            cls.model_validate(res)
        except AttributeError:
            cls.parse_obj(res)


def test_deterministic_output():
    from nlp.pipeline import ClinicalNlp

    nlp = ClinicalNlp()
    a = to_bundle(nlp.extract(NOTE), "Patient/p1", "DocumentReference/d1", recorded="2024-01-01T00:00:00+00:00")
    b = to_bundle(nlp.extract(NOTE), "Patient/p1", "DocumentReference/d1", recorded="2024-01-01T00:00:00+00:00")
    assert a == b and a["type"] == "collection"
