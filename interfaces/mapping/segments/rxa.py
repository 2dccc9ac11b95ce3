"""RXA (+RXR, ORC) -> Immunization (IG RXA[Immunization], RXR[Immunization], ORC[Immunization])."""

from __future__ import annotations

from typing import Any

from interfaces.er7 import Segment
from interfaces.mapping.builder import BundleBuilder, MappingError
from interfaces.mapping.codes import code_of
from interfaces.mapping.datatypes import cwe, ei, field_dtm, quantity
from interfaces.mapping.segments.clinical import DERIVED, _derived_key
from interfaces.mapping.segments.pv1 import practitioner_ref

JsonDict = dict[str, Any]


def map_rxa(
    rxa: Segment,
    rxr: Segment | None,
    orc: Segment | None,
    b: BundleBuilder,
    patient_ref: str,
    patient_key: JsonDict,
) -> str:
    vaccine = cwe(rxa.field_value(5))
    if vaccine is None:
        raise MappingError("RXA-5 (administered code) is required", "RXA^1^5")
    occurrence = field_dtm(rxa, 3)
    if occurrence is None:
        raise MappingError("RXA-3 (start of administration) is required", "RXA^1^3")
    status = code_of("CompletionStatus", rxa.get(20)) or "completed"
    imm: JsonDict = {
        "resourceType": "Immunization",
        "status": status,
        "vaccineCode": vaccine,
        "patient": {"reference": patient_ref},
        "occurrenceDateTime": occurrence,
        "primarySource": rxa.get(9, 1) in ("00", ""),
    }
    amount = rxa.get(6)
    if amount and amount != "999":
        dose = quantity(amount, rxa.field_value(7))
        if dose:
            imm["doseQuantity"] = dose
    if rxa.get(15):
        imm["lotNumber"] = rxa.get(15)
    expiry = field_dtm(rxa, 16, date_only=True)
    if expiry:
        imm["expirationDate"] = expiry
    if rxa.field_value(17) is not None and (rxa.get(17, 2) or rxa.get(17, 1)):
        imm["manufacturer"] = {"display": rxa.get(17, 2) or rxa.get(17, 1)}
    performers = [r for r in (practitioner_ref(f, b) for f in rxa.fields_of(10)) if r]
    if performers:
        imm["performer"] = [{"actor": r} for r in performers]
    if rxr is not None:
        route = cwe(rxr.field_value(1))
        if route:
            imm["route"] = route
        site = cwe(rxr.field_value(2), table="HL70163")
        if site:
            imm["site"] = site
    key = None
    if orc is not None:
        for idx in (3, 2):
            f = orc.field_value(idx)
            key = ei(f) if f else None
            if key:
                key.setdefault("system", DERIVED + "orc")
                break
    if key is None:
        key = _derived_key("immunization", patient_key, {**vaccine, "text": occurrence})
    imm["identifier"] = [key]
    return b.add(imm, key=key)
