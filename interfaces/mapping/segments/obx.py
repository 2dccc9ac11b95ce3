"""OBX -> Observation (IG OBX[Observation], OBX[Observation-Component]); value by OBX-2."""

from __future__ import annotations

import hashlib
from typing import Any

from interfaces.er7 import Segment
from interfaces.mapping.builder import BundleBuilder, MappingError
from interfaces.mapping.codes import code_of, coding_of
from interfaces.mapping.datatypes import cwe, dtm, field_dtm, quantity, reference_range, structured_numeric, tm
from interfaces.mapping.segments.pv1 import practitioner_ref

JsonDict = dict[str, Any]
OBX_SYSTEM = "urn:digitalfront:hl7v2:obx:"
# OBX-19 (Date/Time of the Analysis), as the IG maps it
ANALYSIS_DATE_TIME = "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time"


def observation_value(obx: Segment) -> tuple[str, Any] | None:
    """OBX-5 by OBX-2 value type; several repetitions of ST/TX/FT are joined as lines."""
    vtype = obx.get(2).upper()
    reps = obx.fields_of(5)
    if not reps:
        return None
    first = reps[0]
    units = obx.field_value(6)
    if vtype == "NM":
        q = quantity(first.c(1), units)
        if q is None:
            raise MappingError(
                f"OBX-5 {first.c(1)!r} is not numeric for value type NM",
                f"OBX^{obx.get(1)}^5",
                ("102", "Data type error"),
            )
        return ("valueQuantity", q)
    if vtype == "SN":
        sn = structured_numeric(first, units)
        if sn is None:
            raise MappingError(
                f"OBX-5 {first.raw!r} is not a structured numeric",
                f"OBX^{obx.get(1)}^5",
                ("102", "Data type error"),
            )
        return sn
    if vtype in ("CE", "CWE", "CNE", "CF"):
        concept = cwe(first)
        return ("valueCodeableConcept", concept) if concept else None
    if vtype in ("DT", "TS", "DTM"):
        when = dtm(first.c(1))
        return ("valueDateTime", when) if when else _text(first.c(1))
    if vtype == "TM":
        clock = tm(first.c(1))
        return ("valueTime", clock) if clock else _text(first.c(1))
    if vtype in ("ED", "RP"):
        return None  # attachments go to DocumentReference (MDM) or stay in the stored raw message
    return _text("\n".join(f.text for f in reps))


def _text(value: str) -> tuple[str, Any] | None:
    """What is not a value of its type is kept as text; nothing at all (``^^^``, blanks) is no value."""
    return ("valueString", value) if value.strip() else None


def observation_key(obx: Segment, order_key: str, b: BundleBuilder) -> JsonDict:
    """OBX-21 when sent (v2.6+), else filler order + OBX-3 + OBX-4 (stable across re-sends)."""
    own = obx.field_value(21)
    if own and own.c(1):
        return {"system": OBX_SYSTEM + (own.c(2) or "obx-21"), "value": own.c(1)}
    code = obx.get(3, 1) + "|" + obx.get(3, 3)
    basis = f"{order_key}|{code}|{obx.get(4)}|{obx.get(1) if not obx.get(4) else ''}"
    return {
        "system": OBX_SYSTEM + "derived",
        "value": hashlib.sha1(basis.encode(), usedforsecurity=False).hexdigest(),
    }


def build_observation(obx: Segment, b: BundleBuilder, patient_ref: str | None, encounter_ref: str | None) -> JsonDict:
    status = code_of("ObservationResultStatusCodesInterpretation", obx.get(11)) or "final"
    obs: JsonDict = {"resourceType": "Observation", "status": status}
    code = cwe(obx.field_value(3))
    if code is None:
        raise MappingError("OBX-3 (observation identifier) is required", f"OBX^{obx.get(1)}^3")
    obs["code"] = code
    if patient_ref:
        obs["subject"] = {"reference": patient_ref}
    if encounter_ref:
        obs["encounter"] = {"reference": encounter_ref}
    value = observation_value(obx)
    if value:
        obs[value[0]] = value[1]
    rr = reference_range(obx.get(7), obx.field_value(6))
    if rr:
        obs["referenceRange"] = [{k: v for k, v in rr.items() if v is not None}]
    flags = [c for c in (coding_of("InterpretationCodes", f.c(1)) for f in obx.fields_of(8)) if c]
    if flags:
        obs["interpretation"] = [{"coding": [c]} for c in flags]
    effective = field_dtm(obx, 14)
    if effective:
        obs["effectiveDateTime"] = effective
    analysed = field_dtm(obx, 19)
    if analysed:  # the IG's OBX map: an extension, not Observation.issued (an instant: OBX-19 may be a date)
        obs.setdefault("extension", []).append({"url": ANALYSIS_DATE_TIME, "valueDateTime": analysed})
    performers = [r for r in (practitioner_ref(f, b) for f in obx.fields_of(16)) if r]
    if performers:
        obs["performer"] = performers
    method = cwe(obx.field_value(17))
    if method:
        obs["method"] = method
    return obs


def to_component(obs: JsonDict) -> JsonDict:
    comp: JsonDict = {"code": obs["code"]}
    for k, v in obs.items():
        if k.startswith("value") or k in ("interpretation", "referenceRange"):
            comp[k] = v
    return comp


def map_obx_group(
    obxs: list[Segment],
    b: BundleBuilder,
    patient_ref: str | None,
    encounter_ref: str | None,
    order_key: str,
    notes: dict[int, list[str]] | None = None,
) -> list[str]:
    """Map a run of OBX; an OBX whose OBX-4 is "n.m" becomes a component of the OBX with OBX-4 "n"."""
    refs: list[str] = []
    parents: dict[str, JsonDict] = {}
    for i, obx in enumerate(obxs):
        sub = obx.get(4)
        parent_id = sub.rsplit(".", 1)[0] if "." in sub else ""
        obs = build_observation(obx, b, patient_ref, encounter_ref)
        if parent_id and parent_id in parents:
            parents[parent_id].setdefault("component", []).append(to_component(obs))
            continue
        if notes and notes.get(i):
            obs["note"] = [{"text": t} for t in notes[i]]
        key = observation_key(obx, order_key, b)
        obs["identifier"] = [key]
        if sub:
            parents[sub] = obs
        refs.append(b.add(obs, key=key, mode="id"))
    return refs
