"""PV1 (+PV2) -> Encounter (IG maps PV1[Encounter], PV2[Encounter]); status by trigger event."""

from __future__ import annotations

from typing import Any

from interfaces.er7 import Field, Segment
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.codes import code_of, coding_of, id_system
from interfaces.mapping.datatypes import cwe, cx, field_dtm, practitioner, xcn_identifier, xcn_name

JsonDict = dict[str, Any]


def encounter_status(event: str, pv1: Segment) -> str:
    """IG Event[EncounterStatus]; A08 (and events the map leaves open) read PV1-44/45 instead,
    so an update never moves a discharged or admitted visit back to "unknown"."""
    if event in ("A08", "A06", "A07", "A12", "A14", "A16", "A21", "A22") or not code_of(
        "Event[EncounterStatus]", event
    ):
        if pv1.get(45):
            return "finished"
        if pv1.get(44):
            return "in-progress"
        return "planned" if event in ("A05", "A14") else "unknown"
    return code_of("Event[EncounterStatus]", event) or "unknown"


def practitioner_ref(f: Field, b: BundleBuilder) -> JsonDict | None:
    """XCN -> reference: a conditional-create Practitioner when identified, else a display-only reference."""
    ident = xcn_identifier(f)
    name = xcn_name(f)
    if ident:
        ident.setdefault("system", id_system(b.header.sending_facility or "practitioner"))
        prac = practitioner(f) or {"resourceType": "Practitioner"}
        prac["identifier"] = [ident]
        ref: JsonDict = {"reference": b.add(prac, key=ident, mode="create")}
    else:
        ref = {}
    display = " ".join([*name.get("given", []), name.get("family", "")]).strip() if name else ""
    if display:  # (a name of only a prefix or suffix has none)
        ref["display"] = display
    return ref or None


def _location_display(f: Field) -> str:
    return " ".join(p for p in (f.c(4), f.c(1), f.c(2), f.c(3)) if p) or f.c(9)


def map_pv1(pv1: Segment, pv2: Segment | None, b: BundleBuilder, patient_ref: str) -> str | None:
    """Add the Encounter (conditional update on PV1-19 visit number); None for PV1 without content."""
    event = b.header.trigger_event
    enc: JsonDict = {
        "resourceType": "Encounter",
        "status": encounter_status(event, pv1),
        "subject": {"reference": patient_ref},
    }
    klass = coding_of("PatientClass[EncounterClass]", pv1.get(2))
    enc["class"] = klass or {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK"}
    visit = pv1.field_value(19)
    key = cx(visit) if visit else None
    if key:
        key.setdefault("system", id_system(b.header.sending_facility or "visit"))
        if "type" not in key:
            key["type"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "VN"}]}
        enc["identifier"] = [key]
    loc = pv1.field_value(3)
    if loc and _location_display(loc):
        enc["location"] = [
            {
                "location": {"display": _location_display(loc)},
                "status": "completed" if enc["status"] == "finished" else "active",
            }
        ]
    participants = []
    for idx, code in ((7, "ATND"), (8, "REF"), (9, "CON"), (17, "ADM")):
        for f in pv1.fields_of(idx):
            ref = practitioner_ref(f, b)
            if ref:
                participants.append(
                    {
                        "type": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                        "code": code,
                                    }
                                ]
                            }
                        ],
                        "individual": ref,
                    }
                )
    if participants:
        enc["participant"] = participants
    admission_type = cwe(pv1.field_value(4), table="HL70007")
    if admission_type:
        enc["type"] = [admission_type]
    service = cwe(pv1.field_value(10), table="HL70069")
    if service:
        enc["serviceType"] = service
    period = {k: v for k, v in (("start", field_dtm(pv1, 44)), ("end", field_dtm(pv1, 45))) if v}
    if period:
        enc["period"] = period
    hosp: JsonDict = {}
    admit_source = cwe(pv1.field_value(14), table="HL70023")
    if admit_source:
        hosp["admitSource"] = admit_source
    dispo = cwe(pv1.field_value(36), table="HL70112")
    if dispo:
        hosp["dischargeDisposition"] = dispo
    vip = cwe(pv1.field_value(16), table="HL70099")
    if vip:
        hosp["specialCourtesy"] = [vip]
    if hosp:
        enc["hospitalization"] = hosp
    if pv2 is not None:
        priority = coding_of("EncounterPriority", pv2.get(25))
        if priority:
            enc["priority"] = {"coding": [priority]}
        reason = cwe(pv2.field_value(3))
        if reason:
            enc["reasonCode"] = [reason]
    if not key and not pv1.get(2) and not loc:
        return None
    return b.add(enc, key=key, mode="update")
