"""Our output compared field by field with the IG sample conversions in ../shared.

The two sample Bundles are produced by other converters (MDMI for ADT_A01,
Microsoft FHIR-Converter for MDM_T02) and contain known defects, e.g. the
ADT sample maps NK1-3 "BRO" into a given name and IN1-15 to
"org.mdmi.core.engine.XDataStruct@608f983".  We compare every field where the
sample follows the IG maps; the deliberate differences are asserted as such.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import defusedxml.ElementTree as ET
import pytest

from interfaces.mapping import map_to_bundle
from interfaces.parsing import parse

IG = Path(__file__).resolve().parents[3].parent / "shared" / "corpora" / "v2-to-fhir"

FHIR = "{http://hl7.org/fhir}"


def produced(text: str) -> dict[str, list[dict]]:
    msg, header = parse(text)
    bundle = map_to_bundle(msg, header)
    out: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        out.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    return out


def sample_json(name: str) -> dict[str, list[dict]]:
    path = IG / "samples" / "fhir-bundles" / name
    if not path.exists():
        pytest.skip(f"missing {path}")
    out: dict[str, list[dict]] = {}
    for e in json.loads(path.read_text())["entry"]:
        out.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    return out


def test_adt_a01_patient_matches_the_ig_sample(samples):
    ours = produced(samples["ADT_A01"])["Patient"][0]
    ref = sample_json("FHIR_bundle.hl7_ADT_A01.json")["Patient"][0]
    for ident in ref["identifier"][:3]:
        mine = next(i for i in ours["identifier"] if i["value"] == ident["value"])
        assert mine["type"]["coding"][0]["code"] == ident["type"]["coding"][0]["code"]
        assert mine.get("period") == ident.get("period")
    assert ours["gender"] == ref["gender"] == "female"
    assert ours["birthDate"] == "1970-06-01" and ref["birthDate"].startswith(ours["birthDate"])
    assert ours["multipleBirthInteger"] == ref["multipleBirthInteger"] == 2
    for mine, theirs in zip(ours["name"], ref["name"], strict=True):
        for k in ("family", "given", "use", "prefix", "suffix"):
            assert mine.get(k) == theirs.get(k), k
    assert ours["name"][0]["period"] == ref["name"][0]["period"]
    # XPN-10 (date range 19700601&20000908) -> HumanName.period per the IG XPN map; the sample drops it.
    assert ours["name"][1]["period"] == {"start": "1970-06-01", "end": "2000-09-08"}
    for mine, theirs in zip(ours["address"], ref["address"], strict=True):
        for k in ("line", "state", "postalCode", "country", "use", "period"):
            assert mine.get(k) == theirs.get(k), k
        assert mine["city"] == theirs["city"].strip()  # we trim component whitespace
    assert ours["maritalStatus"]["coding"][0] == {k: v for k, v in ref["maritalStatus"]["coding"][0].items()}
    assert {"system": "email", "value": "eve@test.test"} in [
        {k: t[k] for k in ("system", "value")} for t in ours["telecom"]]


def test_adt_a01_encounter_and_clinical_resources_match_the_ig_sample(samples):
    ours = produced(samples["ADT_A01"])
    ref = sample_json("FHIR_bundle.hl7_ADT_A01.json")
    enc, ref_enc = ours["Encounter"][0], ref["Encounter"][0]
    assert enc["identifier"][0]["value"] == ref_enc["identifier"][0]["value"] == "81456267"
    assert enc["identifier"][0]["type"]["coding"][0]["code"] == "VN"
    assert enc["type"][0]["coding"][0]["code"] == ref_enc["type"][0]["coding"][0]["code"] == "E"
    assert enc["hospitalization"]["specialCourtesy"][0]["coding"][0]["code"] == "VIP"
    assert enc["serviceType"]["coding"][0]["code"] == ref_enc["serviceType"]["coding"][0]["code"] == "EMR"
    assert enc["period"]["start"].startswith(ref_enc["period"]["start"])
    assert enc["status"] == "in-progress"  # IG Event[EncounterStatus] for A01
    assert enc["class"]["code"] == "EMER"  # IG PatientClass[EncounterClass]: E -> v3 EMER
    obs, ref_obs = ours["Observation"][0], ref["Observation"][0]
    assert obs["code"]["coding"][0]["code"] == ref_obs["code"]["coding"][0]["code"] == "8302-2"
    assert obs["valueQuantity"]["value"] == ref_obs["valueQuantity"]["value"] == 190
    assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org" and obs["valueQuantity"]["code"] == "cm"
    assert obs["status"] == ref_obs["status"] == "final"
    allergy, ref_allergy = ours["AllergyIntolerance"][0], ref["AllergyIntolerance"][0]
    assert allergy["code"]["text"] == ref_allergy["code"]["text"] == "Timothy Grass"
    assert allergy["category"] == ["environment"]  # IG AllergenType map (the sample copies the raw "LA")
    assert allergy["reaction"][0]["severity"] == "moderate"
    cov, ref_cov = ours["Coverage"][0], ref["Coverage"][0]
    assert cov["period"]["start"] == ref_cov["period"]["start"]
    assert cov["payor"][0]["display"] == ref_cov["payor"][0]["display"] == "MyInsurancePlan"
    # The sample message shifts NK1 by one field (relationship inside NK1-2, address in NK1-3); the
    # sample Bundle and we both read it positionally, so the names agree.
    contact = ours["Patient"][0]["contact"][0]
    ref_name = ref["RelatedPerson"][0]["name"][0]
    for k in ("family", "given", "prefix", "suffix"):
        assert contact["name"].get(k) == ref_name.get(k), k


def mdm_sample() -> dict[str, list[ET.Element]]:
    path = IG / "samples" / "fhir-bundles" / "FHIR_bundle.hl7_MDM_T02.xml"
    if not path.exists():
        pytest.skip(f"missing {path}")
    root = ET.parse(path).getroot()
    out: dict[str, list] = {}
    for res in root.iter(f"{FHIR}resource"):
        child = list(res)[0]
        out.setdefault(child.tag.replace(FHIR, ""), []).append(child)
    return out


def val(el, path: str) -> str | None:
    found = el.find("/".join(FHIR + p for p in path.split("/")))
    return found.get("value") if found is not None else None


def test_mdm_t02_document_reference_matches_the_ig_sample(samples):
    ours = produced(samples["MDM_T02"])
    ref = mdm_sample()
    doc, ref_doc = ours["DocumentReference"][0], ref["DocumentReference"][0]
    assert doc["masterIdentifier"]["value"] == val(ref_doc, "masterIdentifier/value") == "3738931392"
    assert doc["type"]["coding"][0]["code"] == val(ref_doc, "type/coding/code") == "PN"
    assert doc["type"]["coding"][0]["system"] == val(ref_doc, "type/coding/system")
    assert doc["description"] == val(ref_doc, "description") == "Discharge Summary"
    assert doc["status"] == val(ref_doc, "status") == "current"
    assert "PN_Radon_20230820174913.RTF" in [i["value"] for i in doc["identifier"]]
    note = base64.b64decode(doc["content"][0]["attachment"]["data"]).decode()
    for att in ref_doc.iter(f"{FHIR}attachment"):
        if val(att, "contentType") == "text/plain":
            assert base64.b64decode(val(att, "data")).decode() in note
    assert "Heparin Test (AntiXa)" in note and "\nLab Values :" in note  # \.br\ resolved to line breaks
    patient, ref_patient = ours["Patient"][0], ref["Patient"][0]
    assert patient["identifier"][0]["value"] == val(ref_patient, "identifier/value") == "000322330"
    assert patient["gender"] == val(ref_patient, "gender") == "male"
    assert patient["birthDate"] == val(ref_patient, "birthDate") == "1994-12-01"
    assert patient["name"][0]["family"] == val(ref_patient, "name/family") == "JOHN"
    assert patient["name"][0]["use"] == val(ref_patient, "name/use") == "usual"
    assert patient["address"][0]["postalCode"] == val(ref_patient, "address/postalCode")
    enc, ref_enc = ours["Encounter"][0], ref["Encounter"][0]
    assert enc["identifier"][0]["value"] == val(ref_enc, "identifier/value") == "1234567891"
    assert enc["status"] == val(ref_enc, "status") == "in-progress"
    assert enc["period"]["start"][:16] == val(ref_enc, "period/start")[:16]


def test_oru_r01_observations_values_ranges_flags(samples):
    ours = produced(samples["ORU_R01"])
    obs = ours["Observation"]
    assert [o["code"]["coding"][0]["code"] for o in obs] == ["6153-1", "6041-8", "6265-3"]
    assert obs[0]["valueQuantity"] == {"value": 3.9, "unit": "kU/L", "system": "http://unitsofmeasure.org",
                                       "code": "kU/L"}
    assert obs[0]["referenceRange"][0]["high"]["value"] == 0.1
    assert obs[0]["interpretation"][0]["coding"][0]["code"] == "A"
    assert obs[2]["valueQuantity"]["comparator"] == "<" and obs[2]["valueQuantity"]["value"] == 0.1
    report = ours["DiagnosticReport"][0]
    assert report["status"] == "final" and len(report["result"]) == 3
    assert {i["type"]["coding"][0]["code"] for i in report["identifier"]} == {"PLAC", "FILL"}
    assert ours["ServiceRequest"][0]["identifier"][0]["value"] == "ORD777888"


def test_each_ig_sample_maps_to_its_resources(samples):
    expected = {"ADT_A01": "Encounter", "SIU_S12": "Appointment", "ORM_O01": "ServiceRequest",
                "OML_O21": "ServiceRequest", "ORU_R01": "DiagnosticReport", "MDM_T02": "DocumentReference",
                "VXU_V04": "Immunization"}
    for structure, rtype in expected.items():
        ours = produced(samples[structure])
        assert rtype in ours and "Patient" in ours, structure
        prov = ours["Provenance"][0]
        assert len(prov["target"]) == sum(len(v) for k, v in ours.items() if k != "Provenance")
    imm = produced(samples["VXU_V04"])["Immunization"][0]
    assert imm["vaccineCode"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/ndc"
    assert imm["lotNumber"] == "315841" and imm["route"]["coding"][0]["code"] == "C28161"
    appt = produced(samples["SIU_S12"])["Appointment"][0]
    assert appt["status"] == "booked" and appt["minutesDuration"] == 15
