"""VXU_V04: one Immunization per ORC/RXA group (RXR route/site; OBX observations about the dose)."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder, MappingError
from interfaces.mapping.messages.common import groups, patient_visit
from interfaces.mapping.segments.obx import map_obx_group
from interfaces.mapping.segments.rxa import map_rxa

STRUCTURE = "VXU_V04"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pv = patient_visit(msg, b)
    made = 0
    for group in groups(msg, ("ORC", "RXA"), ("RXA", "RXR", "OBX", "NTE")):
        rxa = next((s for s in group if s.name == "RXA"), None)
        if rxa is None:
            continue
        orc = next((s for s in group if s.name == "ORC"), None)
        rxr = next((s for s in group if s.name == "RXR"), None)
        map_rxa(rxa, rxr, orc, b, pv.patient_ref, pv.patient_key)
        obxs = [s for s in group if s.name == "OBX"]
        if obxs:
            map_obx_group(
                obxs,
                b,
                pv.patient_ref,
                pv.encounter_ref,
                f"{pv.patient_key.get('value')}|{rxa.get(3)}|{rxa.get(5)}",
            )
        made += 1
    if not made:
        raise MappingError("VXU_V04 without an RXA segment", "RXA", ("100", "Segment sequence error"))
