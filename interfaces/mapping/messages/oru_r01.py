"""ORU_R01: one DiagnosticReport per OBR with its Observations (numeric with UCUM, coded, text,
reference ranges, abnormal flags, OBX-4 components); NTE after an OBX becomes Observation.note."""

from __future__ import annotations

from interfaces.er7 import Er7Message, Segment
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.codes import id_system
from interfaces.mapping.messages.common import groups, patient_visit
from interfaces.mapping.segments.obx import map_obx_group
from interfaces.mapping.segments.orders import map_diagnostic_report, map_service_request, order_identifiers

STRUCTURE = "ORU_R01"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pv = patient_visit(msg, b, patient_mode="create")
    for group in groups(msg, ("ORC", "OBR"), ("OBR", "OBX", "NTE", "SPM", "TQ1", "PRT")):
        orc = next((s for s in group if s.name == "ORC"), None)
        obr = next((s for s in group if s.name == "OBR"), None)
        if obr is None:
            continue
        obxs: list[Segment] = []
        notes: dict[int, list[str]] = {}
        for seg in group:
            if seg.name == "OBX":
                obxs.append(seg)
            elif seg.name == "NTE" and obxs:
                notes.setdefault(len(obxs) - 1, []).append(seg.get(3) or "")
        idents = order_identifiers(orc, obr, id_system(b.header.sending_application or "results"))
        order_key = "|".join(f"{i.get('system')}|{i['value']}" for i in idents) or (
            f"{pv.patient_key.get('value')}|{b.header.control_id}|{obr.get(1)}"
        )
        results = map_obx_group(obxs, b, pv.patient_ref, pv.encounter_ref, order_key, notes)
        based_on = (
            map_service_request(orc, obr, b, pv.patient_ref, pv.encounter_ref)
            if obr.get(2) or (orc is not None and orc.get(2))
            else None
        )
        map_diagnostic_report(orc, obr, b, pv.patient_ref, pv.encounter_ref, results, based_on)
