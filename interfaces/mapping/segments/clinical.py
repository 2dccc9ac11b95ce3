"""DG1 -> Condition, AL1 -> AllergyIntolerance, PR1 -> Procedure (IG segment maps of the same names).

These segments rarely carry their own identifiers before v2.6, so the key is
derived from the patient and the coded concept: re-sending the same ADT
updates the same Condition instead of adding another.
"""

from __future__ import annotations

import hashlib
from typing import Any

from interfaces.er7 import Segment
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.codes import code_of, coding_of
from interfaces.mapping.datatypes import cwe, ei, field_dtm

JsonDict = dict[str, Any]
DERIVED = "urn:digitalfront:hl7v2:derived:"


def _derived_key(kind: str, patient_key: JsonDict, concept: JsonDict | None) -> JsonDict:
    c = (concept or {}).get("coding", [{}])[0] if (concept or {}).get("coding") else {}
    basis = (
        f"{patient_key.get('system')}|{patient_key.get('value')}|{c.get('system', '')}|"
        f"{c.get('code', '')}|{(concept or {}).get('text', '')}"
    )
    return {
        "system": DERIVED + kind,
        "value": hashlib.sha1(basis.encode(), usedforsecurity=False).hexdigest(),
    }


def _coded_or_described(seg: Segment) -> JsonDict | None:
    """DG1-3/PR1-3 as a CodeableConcept, or only the text of the description in field 4 when uncoded."""
    code = cwe(seg.field_value(3))
    if code is None and seg.get(4):
        code = {"text": seg.get(4)}
    return code


def map_dg1(
    dg1: Segment, b: BundleBuilder, patient_ref: str, patient_key: JsonDict, encounter_ref: str | None
) -> str | None:
    code = _coded_or_described(dg1)
    if code is None:
        return None
    cond: JsonDict = {
        "resourceType": "Condition",
        "subject": {"reference": patient_ref},
        "code": code,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                    }
                ]
            }
        ],
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed" if dg1.get(6) == "F" else "provisional",
                }
            ]
        },
    }
    if encounter_ref:
        cond["encounter"] = {"reference": encounter_ref}
    onset = field_dtm(dg1, 5)
    if onset:
        cond["onsetDateTime"] = onset
    key = ei(dg1.field_value(20)) if dg1.field_value(20) else None
    if key:
        key.setdefault("system", DERIVED + "dg1-20")
    else:
        key = _derived_key("condition", patient_key, code)
    cond["identifier"] = [key]
    return b.add(cond, key=key)


def map_al1(al1: Segment, b: BundleBuilder, patient_ref: str, patient_key: JsonDict) -> str | None:
    code = cwe(al1.field_value(3))
    if code is None:
        return None
    allergy: JsonDict = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": patient_ref},
        "code": code,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }
            ]
        },
    }
    category = code_of("AllergenType[AllergyIntoleranceCategory]", al1.get(2))
    if category:
        allergy["category"] = [category]
    reaction: JsonDict = {}
    manifestations = [{"text": f.text.strip()} for f in al1.fields_of(5) if f.text.strip()]
    if manifestations:
        reaction["manifestation"] = manifestations
        severity = code_of("AllergySeverity[AllergyIntolerance.reaction.severity]", al1.get(4))
        if severity:
            reaction["severity"] = severity
        allergy["reaction"] = [reaction]
    crit = code_of("AllergySeverity[AllergyIntolerance.criticality]", al1.get(4))
    if crit:
        allergy["criticality"] = crit
    onset = field_dtm(al1, 6)
    if onset:
        allergy["onsetDateTime"] = onset
    key = _derived_key("allergy", patient_key, code)
    allergy["identifier"] = [key]
    return b.add(allergy, key=key)


def map_pr1(
    pr1: Segment, b: BundleBuilder, patient_ref: str, patient_key: JsonDict, encounter_ref: str | None
) -> str | None:
    code = _coded_or_described(pr1)
    if code is None:
        return None
    proc: JsonDict = {
        "resourceType": "Procedure",
        "status": "completed",
        "subject": {"reference": patient_ref},
        "code": code,
    }
    if encounter_ref:
        proc["encounter"] = {"reference": encounter_ref}
    performed = field_dtm(pr1, 5)
    if performed:
        proc["performedDateTime"] = performed
    key = ei(pr1.field_value(19)) if pr1.field_value(19) else None
    if key:
        key.setdefault("system", DERIVED + "pr1-19")
    else:
        key = _derived_key("procedure", patient_key, {**code, "text": f"{code.get('text', '')}|{pr1.get(5)}"})
    proc["identifier"] = [key]
    return b.add(proc, key=key)


def interpretation(flag: str) -> JsonDict | None:
    coding = coding_of("InterpretationCodes", flag)
    return {"coding": [coding]} if coding else None
