"""ORC/OBR -> ServiceRequest and DiagnosticReport (IG ORC[ServiceRequest], OBR[ServiceRequest],
OBR[DiagnosticReport]); keyed on placer (PLAC) and filler (FILL) order numbers."""

from __future__ import annotations

from typing import Any

from interfaces.er7 import Segment
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.codes import code_of, id_system
from interfaces.mapping.datatypes import cwe, ei, field_dtm
from interfaces.mapping.segments.pv1 import practitioner_ref

JsonDict = dict[str, Any]
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def order_identifiers(orc: Segment | None, obr: Segment | None, default_system: str) -> list[JsonDict]:
    out: list[JsonDict] = []
    for seg, placer_idx, filler_idx in ((orc, 2, 3), (obr, 2, 3)):
        if seg is None:
            continue
        for idx, code in ((placer_idx, "PLAC"), (filler_idx, "FILL")):
            f = seg.field_value(idx)
            ident = ei(f) if f else None
            if ident and not any(i["value"] == ident["value"] and _type(i) == code for i in out):
                ident.setdefault("system", default_system)
                ident["type"] = {"coding": [{"system": V2_0203, "code": code}]}
                out.append(ident)
    return out


def _type(ident: JsonDict) -> str:
    codings = ident.get("type", {}).get("coding", [])
    return str(codings[0].get("code")) if codings else ""


def pick(idents: list[JsonDict], code: str) -> JsonDict | None:
    return next((i for i in idents if _type(i) == code), None)


def map_service_request(
    orc: Segment | None,
    obr: Segment | None,
    b: BundleBuilder,
    patient_ref: str,
    encounter_ref: str | None,
    notes: list[str] | None = None,
) -> str | None:
    idents = order_identifiers(orc, obr, id_system(b.header.sending_application or "orders"))
    placer, filler = pick(idents, "PLAC"), pick(idents, "FILL")
    key = placer or filler
    if key is None:
        return None
    control = orc.get(1) if orc is not None else "NW"
    status = code_of("OrderControlCode[ServiceRequest.status]", control) or "active"
    if orc is not None and orc.get(5):
        status = code_of("OrderStatus", orc.get(5)) or status
    sr: JsonDict = {
        "resourceType": "ServiceRequest",
        "status": status,
        "intent": "order",
        "identifier": idents,
        "subject": {"reference": patient_ref},
    }
    code = cwe(obr.field_value(4)) if obr is not None else None
    sr["code"] = code or {"text": "unspecified order"}
    if encounter_ref:
        sr["encounter"] = {"reference": encounter_ref}
    authored = field_dtm(orc, 9) if orc is not None else None
    if authored:
        sr["authoredOn"] = authored
    requester_field = (orc.field_value(12) if orc is not None else None) or (
        obr.field_value(16) if obr is not None else None
    )
    if requester_field is not None:
        ref = practitioner_ref(requester_field, b)
        if ref:
            sr["requester"] = ref
    priority = obr.get(5) if obr is not None else ""
    if priority in ("S", "A"):
        sr["priority"] = "stat" if priority == "S" else "asap"
    if notes:
        sr["note"] = [{"text": t} for t in notes]
    # placer or filler: an order first seen with one number (a lab's reflex order: filler only) and later
    # with both is one ServiceRequest, not two; both matching different records is a conflict (AE, kept)
    return b.add(sr, key=key, also=(filler,) if placer is not None and filler is not None else ())


def map_diagnostic_report(
    orc: Segment | None,
    obr: Segment,
    b: BundleBuilder,
    patient_ref: str | None,
    encounter_ref: str | None,
    results: list[str],
    based_on: str | None,
) -> str:
    idents = order_identifiers(orc, obr, id_system(b.header.sending_application or "results"))
    status = code_of("ResultStatus[Non-Queries]", obr.get(25)) or "final"
    dr: JsonDict = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "code": cwe(obr.field_value(4)) or {"text": "unspecified report"},
    }
    if idents:
        dr["identifier"] = idents
    if patient_ref:
        dr["subject"] = {"reference": patient_ref}
    if encounter_ref:
        dr["encounter"] = {"reference": encounter_ref}
    effective, effective_end = field_dtm(obr, 7), field_dtm(obr, 8)
    if effective_end:  # the IG's OBR map: a period when OBR-8 is valued
        dr["effectivePeriod"] = {k: v for k, v in (("start", effective), ("end", effective_end)) if v}
    elif effective:
        dr["effectiveDateTime"] = effective
    issued = field_dtm(obr, 22, instant=True)
    if issued:
        dr["issued"] = issued
    if results:
        dr["result"] = [{"reference": r} for r in results]
    if based_on:
        dr["basedOn"] = [{"reference": based_on}]
    section = cwe(obr.field_value(24), table="HL70074")
    if section:
        dr["category"] = [section]
    key = pick(idents, "FILL") or pick(idents, "PLAC")
    return b.add(dr, key=key)
