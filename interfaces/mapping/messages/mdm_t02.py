"""MDM_T02 (and T04/T06/T08): DocumentReference with the note text, which feeds the NLP service."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.codes import id_system
from interfaces.mapping.datatypes import ei
from interfaces.mapping.messages.common import patient_visit
from interfaces.mapping.segments.txa import map_txa

STRUCTURE = "MDM_T02"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pv = patient_visit(msg, b, patient_mode="create")
    obr = msg.first("OBR")
    orc = msg.first("ORC")
    fallback = None
    for seg, idx in ((obr, 3), (orc, 3), (orc, 2)):
        f = seg.field_value(idx) if seg is not None else None
        if f is not None and (fallback := ei(f)):
            break
    if fallback is None:
        fallback = {
            "system": id_system(b.header.sending_application or "mdm"),
            "value": f"{b.header.control_id}",
        }
    map_txa(msg.first("TXA"), msg.all("OBX"), b, pv.patient_ref, pv.encounter_ref, fallback)
