"""SIU_S12 (also S13/S14/S15): Appointment keyed on SCH-2 filler / SCH-1 placer id."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.messages.common import patient_visit, require
from interfaces.mapping.segments.sch import map_sch

STRUCTURE = "SIU_S12"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    sch = require(msg, "SCH")
    patient_ref = None
    if msg.first("PID") is not None:
        patient_ref = patient_visit(msg, b, patient_mode="create", visit=False).patient_ref
    map_sch(msg, sch, b, patient_ref)
