"""IN1 -> Coverage (IG IN1[Coverage]); keyed on the policy number so re-sends update."""

from __future__ import annotations

from typing import Any

from interfaces.er7 import Segment
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.codes import id_system
from interfaces.mapping.datatypes import cwe, cx, field_dtm, mapped_concept

JsonDict = dict[str, Any]


def map_in1(in1: Segment, b: BundleBuilder, patient_ref: str, patient_key: JsonDict) -> str | None:
    cov: JsonDict = {
        "resourceType": "Coverage",
        "status": "active",
        "beneficiary": {"reference": patient_ref},
    }
    payor_name = in1.get(4)
    payor_id = in1.get(3)
    cov["payor"] = [{"display": payor_name or payor_id or "unknown payor"}]
    period = {k: v for k, v in (("start", field_dtm(in1, 12, date_only=True)),
                                ("end", field_dtm(in1, 13, date_only=True))) if v}
    if period:
        cov["period"] = period
    plan_type = cwe(in1.field_value(15), table="HL70086")
    if plan_type:
        cov["type"] = plan_type
    relationship = mapped_concept(in1.field_value(17), "Relationship")
    if relationship:
        cov["relationship"] = relationship
    policy = in1.get(36)
    member = next((i for i in (cx(f) for f in in1.fields_of(49)) if i), None)
    if policy:
        cov["subscriberId"] = policy
    key: JsonDict | None = None
    system = id_system("coverage:" + (payor_id or payor_name or "payor"))
    if member:
        member.setdefault("system", system)
        key = member
    elif policy:
        key = {"system": system, "value": policy}
    else:
        key = {"system": system, "value": f"{patient_key.get('value')}-{in1.get(2) or in1.get(1) or '1'}"}
    cov["identifier"] = [key]
    return b.add(cov, key=key, mode="update")
