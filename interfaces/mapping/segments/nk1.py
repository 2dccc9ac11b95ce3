"""NK1 -> Patient.contact (IG NK1[Patient]); a RelatedPerson too when NK1-33 identifies the person."""

from __future__ import annotations

from typing import Any

from interfaces.er7 import Segment
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.codes import id_system
from interfaces.mapping.datatypes import cx, mapped_concept, xad, xpn, xtn

JsonDict = dict[str, Any]


def map_nk1(nk1: Segment, b: BundleBuilder, patient: JsonDict, patient_ref: str) -> None:
    contact: JsonDict = {}
    name = xpn(nk1.field_value(2)) if nk1.field_value(2) else None
    if name:
        contact["name"] = name
    rel = nk1.field_value(3)
    relationship = mapped_concept(rel, "Relationship", table="HL70063")
    if relationship is not None and rel is not None and rel.c(2):
        relationship["text"] = rel.c(2)
    if relationship:
        contact["relationship"] = [relationship]
    addr = xad(nk1.field_value(4)) if nk1.field_value(4) else None
    if addr:
        contact["address"] = addr
    telecom = [t for t in (xtn(f) for f in nk1.fields_of(5) + nk1.fields_of(6)) if t]
    if telecom:
        contact["telecom"] = telecom
    if not contact:
        return
    patient.setdefault("contact", []).append(contact)
    idents = [i for i in (cx(f) for f in nk1.fields_of(33)) if i]
    if idents:
        for i in idents:
            i.setdefault("system", id_system(b.header.sending_facility or "related-person"))
        person: JsonDict = {
            "resourceType": "RelatedPerson",
            "patient": {"reference": patient_ref},
            "identifier": idents,
        }
        for k in ("name", "address", "telecom"):
            if k in contact:
                person[k] = [contact[k]] if k != "telecom" else contact[k]
        if relationship:
            person["relationship"] = [relationship]
        b.add(person, key=idents[0], mode="update")
