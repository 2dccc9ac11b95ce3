"""Shared walk over the patient/visit part of ADT, ORU, ORM, OML, VXU, SIU and MDM messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interfaces.er7 import Er7Message, Segment
from interfaces.mapping.builder import BundleBuilder, MappingError
from interfaces.mapping.segments.clinical import map_al1, map_dg1, map_pr1
from interfaces.mapping.segments.in1 import map_in1
from interfaces.mapping.segments.nk1 import map_nk1
from interfaces.mapping.segments.obx import map_obx_group
from interfaces.mapping.segments.orders import map_service_request
from interfaces.mapping.segments.pid import map_pid
from interfaces.mapping.segments.pv1 import map_pv1

JsonDict = dict[str, Any]


@dataclass
class PatientVisit:
    patient_ref: str
    patient: JsonDict
    patient_key: JsonDict
    encounter_ref: str | None


def require(msg: Er7Message, name: str) -> Segment:
    seg = msg.first(name)
    if seg is None:
        raise MappingError(
            f"{msg.msh.get(9, 3) or msg.msh.get(9, 1)} requires a {name} segment",
            name,
            ("100", "Segment sequence error"),
        )
    return seg


def patient_visit(
    msg: Er7Message, b: BundleBuilder, *, patient_mode: str = "update", visit: bool = True
) -> PatientVisit:
    pid = require(msg, "PID")
    ref, key = map_pid(pid, b, mode=patient_mode)
    patient = b.entries[-1]["resource"] if b.entries[-1]["fullUrl"] == ref else _find(b, ref)
    for nk1 in msg.all("NK1"):
        map_nk1(nk1, b, patient, ref)
    enc_ref = None
    pv1 = msg.first("PV1")
    if visit and pv1 is not None:
        enc_ref = map_pv1(pv1, msg.first("PV2"), b, ref)
    return PatientVisit(ref, patient, key, enc_ref)


def _find(b: BundleBuilder, ref: str) -> JsonDict:
    for e in b.entries:
        if e["fullUrl"] == ref:
            res: JsonDict = e["resource"]
            return res
    raise KeyError(ref)


def adt_clinical(msg: Er7Message, b: BundleBuilder, pv: PatientVisit) -> None:
    """The optional ADT groups: OBX, AL1, DG1, PR1, IN1."""
    obxs = msg.all("OBX")
    if obxs:
        order_key = f"{pv.patient_key.get('value')}|{b.header.message_datetime}"
        map_obx_group(obxs, b, pv.patient_ref, pv.encounter_ref, order_key)
    for al1 in msg.all("AL1"):
        map_al1(al1, b, pv.patient_ref, pv.patient_key)
    for dg1 in msg.all("DG1"):
        map_dg1(dg1, b, pv.patient_ref, pv.patient_key, pv.encounter_ref)
    for pr1 in msg.all("PR1"):
        map_pr1(pr1, b, pv.patient_ref, pv.patient_key, pv.encounter_ref)
    for in1 in msg.all("IN1"):
        map_in1(in1, b, pv.patient_ref, pv.patient_key)


def groups(msg: Er7Message, starts: tuple[str, ...], members: tuple[str, ...]) -> list[list[Segment]]:
    """Split the body into groups each opened by one of ``starts`` (e.g. ORC/OBR for order groups)."""
    out: list[list[Segment]] = []
    for seg in msg.segments:
        if seg.name in starts and not (
            out and seg.name == "OBR" and out[-1][0].name == "ORC" and not any(s.name == "OBR" for s in out[-1])
        ):
            out.append([seg])
        elif out and seg.name in members:
            out[-1].append(seg)
    return out


def map_order_groups(msg: Er7Message, b: BundleBuilder) -> None:
    """ORM_O01 and OML_O21: the patient and visit, then one ServiceRequest per ORC/OBR order group, keyed on
    its placer (else filler) number; a message with no numbered order is an error."""
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
