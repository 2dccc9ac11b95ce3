"""OML_O21 (lab order): one ServiceRequest per ORC/OBR order group, keyed on the placer number."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder, MappingError
from interfaces.mapping.messages.common import groups, patient_visit
from interfaces.mapping.segments.orders import map_service_request

STRUCTURE = "OML_O21"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pv = patient_visit(msg, b, patient_mode="create")
    made = 0
    for group in groups(msg, ("ORC", "OBR"), ("OBR", "NTE", "DG1", "OBX", "TQ1", "SPM", "PRT")):
        orc = next((s for s in group if s.name == "ORC"), None)
        obr = next((s for s in group if s.name == "OBR"), None)
        notes = [s.get(3) for s in group if s.name == "NTE" and s.get(3)]
        if map_service_request(orc, obr, b, pv.patient_ref, pv.encounter_ref, notes):
            made += 1
    if not made:
        raise MappingError("no order with a placer or filler number (ORC-2/ORC-3/OBR-2/OBR-3)", "ORC^1^2")
