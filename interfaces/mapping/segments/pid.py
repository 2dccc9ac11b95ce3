"""PID -> Patient (IG map PID[Patient])."""

from __future__ import annotations

from typing import Any

from interfaces.er7 import Segment
from interfaces.mapping.builder import BundleBuilder, MappingError
from interfaces.mapping.codes import code_of, id_system
from interfaces.mapping.datatypes import cwe, cx, field_dtm, mapped_concept, xad, xpn, xtn

JsonDict = dict[str, Any]
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"


def patient_identifiers(pid: Segment, default_system: str) -> list[JsonDict]:
    """PID-3 (and PID-2, PID-19 SSN) with a system on every identifier so conditional URLs match."""
    idents: list[JsonDict] = []
    for f in pid.fields_of(3) + pid.fields_of(2):
        ident = cx(f)
        if ident:
            ident.setdefault("system", default_system)
            idents.append(ident)
    ssn = pid.get(19)
    if ssn:
        idents.append(
            {
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": ssn,
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
            }
        )
    return idents


def patient_key(idents: list[JsonDict]) -> JsonDict:
    """The identifier used for conditional writes: the MR if present, else the first PID-3."""
    for ident in idents:
        codes = [c.get("code") for c in ident.get("type", {}).get("coding", [])]
        if "MR" in codes:
            return ident
    return idents[0]


def map_pid(pid: Segment, b: BundleBuilder, *, mode: str = "update") -> tuple[str, JsonDict]:
    """Add the Patient; returns (reference, key identifier)."""
    default_system = id_system(b.header.sending_facility or b.header.sending_application or "unknown")
    idents = patient_identifiers(pid, default_system)
    if not idents:
        raise MappingError("PID-3 (patient identifier list) is required", "PID^1^3")
    # active is always sent so an A40 merge can FHIRPath-replace it on the retired record.
    patient: JsonDict = {"resourceType": "Patient", "active": True, "identifier": idents}
    names = [n for n in (xpn(f) for f in pid.fields_of(5) + pid.fields_of(9)) if n]
    if names:
        patient["name"] = names
    gender = code_of("AdministrativeSex", pid.get(8))
    if gender:
        patient["gender"] = gender
    born = field_dtm(pid, 7)  # (the time checked too)
    if born:
        patient["birthDate"] = born.partition("T")[0]
        if "T" in born:
            birth_time = {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": born}
            patient["_birthDate"] = {"extension": [birth_time]}
    telecom = [t for t in (xtn(f) for f in pid.fields_of(13) + pid.fields_of(14)) if t]
    if telecom:
        patient["telecom"] = telecom
    addresses = [a for a in (xad(f) for f in pid.fields_of(11)) if a]
    if addresses:
        patient["address"] = addresses
    marital = mapped_concept(pid.field_value(16), "MaritalStatus")
    if marital:
        patient["maritalStatus"] = marital
    lang = cwe(pid.field_value(15))
    if lang:
        patient["communication"] = [{"language": lang, "preferred": True}]
    _race_ethnicity(pid, patient)
    religion = cwe(pid.field_value(17), table="HL70006")
    if religion:
        patient.setdefault("extension", []).append(
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-religion",
                "valueCodeableConcept": religion,
            }
        )
    mmn = pid.field_value(6)
    if mmn and mmn.c(1):
        patient.setdefault("extension", []).append(
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                "valueString": mmn.c(1),
            }
        )
    if pid.get(24) == "Y":
        order = pid.get(25)
        if order.isdigit() and 0 < int(order) < 2**31:  # a FHIR integer; otherwise only "yes"
            patient["multipleBirthInteger"] = int(order)
        else:  # (not one expression: compiled, ``int(...) if ... else True`` is an int, and True becomes 1)
            patient["multipleBirthBoolean"] = True
    elif pid.get(24) == "N":
        patient["multipleBirthBoolean"] = False
    death = field_dtm(pid, 29)
    if death:
        patient["deceasedDateTime"] = death
    elif pid.get(30) in ("Y", "N"):
        patient["deceasedBoolean"] = pid.get(30) == "Y"
    key = patient_key(idents)
    return b.add(patient, key=key, mode=mode), key


def _race_ethnicity(pid: Segment, patient: JsonDict) -> None:
    for idx, url in ((10, "us-core-race"), (22, "us-core-ethnicity")):
        parts: list[JsonDict] = []
        texts: list[str] = []
        for f in pid.fields_of(idx):
            if f.c(1):
                parts.append(
                    {
                        "url": "ombCategory",
                        "valueCoding": {
                            "system": "urn:oid:2.16.840.1.113883.6.238",
                            "code": f.c(1),
                            **({"display": f.c(2)} if f.c(2) else {}),
                        },
                    }
                )
            if f.c(2):
                texts.append(f.c(2))
        if parts:
            parts.append({"url": "text", "valueString": ", ".join(texts) or parts[0]["valueCoding"]["code"]})
            patient.setdefault("extension", []).append({"url": US_CORE + url, "extension": parts})
