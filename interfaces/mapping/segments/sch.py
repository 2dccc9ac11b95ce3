"""SCH (+AIS/AIG/AIL/AIP) -> Appointment (IG SCH/AIx[Appointment])."""

from __future__ import annotations

from typing import Any

from interfaces.er7 import Er7Message, Segment
from interfaces.mapping.builder import BundleBuilder, MappingError
from interfaces.mapping.codes import code_of, id_system
from interfaces.mapping.datatypes import cwe, dtm, ei, number
from interfaces.mapping.segments.pv1 import practitioner_ref

JsonDict = dict[str, Any]


def map_sch(msg: Er7Message, sch: Segment, b: BundleBuilder, patient_ref: str | None) -> str:
    idents = [i for i in (ei(f) for f in sch.fields_of(2) + sch.fields_of(1)) if i]
    if not idents:
        raise MappingError("SCH-1 or SCH-2 (appointment id) is required", "SCH^1^2")
    for i in idents:
        i.setdefault("system", id_system(b.header.sending_application or "scheduling"))
    status = code_of("FillerStatusCodes[Appointment]", sch.get(25)) or "booked"
    if b.header.trigger_event == "S15":
        status = "cancelled"
    appt: JsonDict = {"resourceType": "Appointment", "status": status, "identifier": idents}
    timing = sch.field_value(11)
    start = _instant(timing.c(4), "SCH^1^11") if timing else None
    end = _instant(timing.c(5), "SCH^1^11") if timing else None
    ais = msg.first("AIS")
    if not start and ais is not None:
        start = _instant(ais.get(4), "AIS^1^4")
    if start:
        appt["start"] = start
    if end:
        appt["end"] = end
    duration = number(sch.get(9)) if sch.get(9) else None
    if isinstance(duration, int) and 0 < duration < 2**31:  # positiveInt
        appt["minutesDuration"] = duration
    reason = cwe(sch.field_value(7))
    if reason:
        appt["reasonCode"] = [reason]
    atype = cwe(sch.field_value(8))
    if atype:
        appt["appointmentType"] = atype
    if ais is not None:
        service = cwe(ais.field_value(3))
        if service:
            appt["serviceType"] = [service]
    participants: list[JsonDict] = []
    if patient_ref:
        participants.append({"actor": {"reference": patient_ref}, "status": "accepted"})
    for aip in msg.all("AIP"):
        f = aip.field_value(3)
        ref = practitioner_ref(f, b) if f else None
        if ref:
            participants.append({"actor": ref, "status": "accepted"})
    for ail in msg.all("AIL"):
        loc = ail.field_value(3)
        display = " ".join(p for p in ((loc.c(9) or loc.c(1)) if loc else "", ail.get(4, 2)) if p)
        if display:
            participants.append({"actor": {"display": display}, "status": "accepted"})
    for aig in msg.all("AIG"):
        display = aig.get(3, 2) or aig.get(3, 1)
        if display:
            participants.append({"actor": {"display": display}, "status": "accepted"})
    appt["participant"] = participants or [{"status": "needs-action", "actor": {"display": "unassigned"}}]
    return b.add(appt, key=idents[0])


def _instant(value: str, location: str) -> str | None:
    """Appointment.start/end: instants. A date without a time is an error here, not left out: a booked
    appointment must have both (FHIR app-3), and a date alone does not say when to come."""
    if not value:
        return None
    out = dtm(value, instant=True)
    if out is None:
        problem = "has no time" if dtm(value) is not None else "is not a valid date/time"
        raise MappingError(f"{location.replace('^1^', '-')} {value!r} {problem} (Appointment start/end are instants)",
                           location, ("102", "Data type error"))
    return out
