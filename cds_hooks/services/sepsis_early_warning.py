"""patient-view sepsis-early-warning: qSOFA (Sepsis-3) and NEWS2 (RCP 2017) from latest vitals and lactate.

Only values from the last 24 hours count (older data says nothing about now);
each card shows every parameter's value, points and timestamp so the clinician
can check the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cds_hooks.cards import Action, Card, CdsResponse, Suggestion, new_id, override_reason
from cds_hooks.fhirdata import LOINC, codings, effective_time, quantity, usable_observation
from cds_hooks.prefetch import PrefetchData
from cds_hooks.registry import CdsService, ServiceEnv

JsonDict = dict[str, Any]
WINDOW = timedelta(hours=24)

# parameter -> LOINC codes (observation code or component code)
PARAMS: dict[str, tuple[str, ...]] = {
    "rr": ("9279-1",),
    "sbp": ("8480-6",),
    "hr": ("8867-4",),
    "temp": ("8310-5", "8331-1", "8332-9", "8333-7"),
    "spo2": ("59408-5", "2708-6"),
    "o2": ("3150-0", "3151-8"),
    "gcs": ("9269-2",),
    "avpu": ("67775-7",),
    "lactate": ("2524-7", "32693-4"),
}
PANELS = ("85354-9", "55284-4")  # blood pressure panels carrying 8480-6 as a component
LABELS = {"rr": "Respiratory rate", "sbp": "Systolic BP", "hr": "Heart rate", "temp": "Temperature",
          "spo2": "SpO2", "o2": "Supplemental O2", "gcs": "GCS", "avpu": "ACVPU", "lactate": "Lactate"}
ALL_CODES = sorted({c for codes in PARAMS.values() for c in codes} | set(PANELS))


@dataclass
class Reading:
    value: float | str
    unit: str
    at: datetime


def _value(obs_or_comp: JsonDict, param: str) -> tuple[float | str, str] | None:
    q = quantity(obs_or_comp.get("valueQuantity"))
    if q is not None:
        v, unit = q
        if param == "temp" and unit in ("[degF]", "degF", "°F"):
            return round((v - 32) * 5 / 9, 1), "Cel"
        if param == "lactate" and unit in ("mg/dL",):
            return round(v / 9.008, 2), "mmol/L"
        return v, unit
    if isinstance(obs_or_comp.get("valueInteger"), int):
        return float(obs_or_comp["valueInteger"]), ""
    cc = obs_or_comp.get("valueCodeableConcept")
    if param == "avpu" and isinstance(cc, dict):
        for c in codings(cc):
            text = str(c.get("display") or c.get("code") or "").lower()
            for key in ("alert", "confus", "voice", "pain", "unresponsive"):
                if key in text:
                    return key, ""
    return None


def latest_readings(observations: list[JsonDict], now: datetime) -> dict[str, Reading]:
    out: dict[str, Reading] = {}

    def offer(param: str, src: JsonDict, at: datetime) -> None:
        v = _value(src, param)
        if v is not None and (param not in out or at > out[param].at):
            out[param] = Reading(v[0], v[1], at)

    for obs in observations:
        if not usable_observation(obs):
            continue
        at = effective_time(obs)
        if at is None or not (now - WINDOW <= at <= now + timedelta(minutes=5)):
            continue
        codes = {c.get("code") for c in codings(obs.get("code")) if c.get("system") in (LOINC, None)}
        for param, pcodes in PARAMS.items():
            if codes & set(pcodes):
                offer(param, obs, at)
        for comp in obs.get("component") or []:
            ccodes = {c.get("code") for c in codings(comp.get("code"))}
            for param, pcodes in PARAMS.items():
                if ccodes & set(pcodes):
                    offer(param, comp, at)
    return out


def _band(v: float, bands: list[tuple[float, int]], top: int) -> int:
    for upper, pts in bands:
        if v <= upper:
            return pts
    return top


def news2(r: dict[str, Reading]) -> dict[str, int]:
    """Points per available NEWS2 parameter (SpO2 scale 1)."""
    pts: dict[str, int] = {}
    if "rr" in r and isinstance(r["rr"].value, float):
        pts["rr"] = _band(float(r["rr"].value), [(8, 3), (11, 1), (20, 0), (24, 2)], 3)
    if "spo2" in r and isinstance(r["spo2"].value, float):
        pts["spo2"] = _band(float(r["spo2"].value), [(91, 3), (93, 2), (95, 1)], 0)
    if "o2" in r and isinstance(r["o2"].value, float):
        v, unit = float(r["o2"].value), r["o2"].unit
        on_oxygen = v > 21 if unit == "%" else v > 0
        pts["o2"] = 2 if on_oxygen else 0
    if "sbp" in r and isinstance(r["sbp"].value, float):
        v = float(r["sbp"].value)
        pts["sbp"] = 3 if v >= 220 else _band(v, [(90, 3), (100, 2), (110, 1)], 0)
    if "hr" in r and isinstance(r["hr"].value, float):
        pts["hr"] = _band(float(r["hr"].value), [(40, 3), (50, 1), (90, 0), (110, 1), (130, 2)], 3)
    if "temp" in r and isinstance(r["temp"].value, float):
        pts["temp"] = _band(float(r["temp"].value), [(35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)], 2)
    altered = _altered(r)
    if altered is not None:
        pts["consciousness"] = 3 if altered else 0
    return pts


def _altered(r: dict[str, Reading]) -> bool | None:
    if "gcs" in r and isinstance(r["gcs"].value, float):
        return float(r["gcs"].value) < 15
    if "avpu" in r:
        return r["avpu"].value != "alert"
    return None


def qsofa(r: dict[str, Reading]) -> dict[str, int]:
    pts: dict[str, int] = {}
    if "rr" in r and isinstance(r["rr"].value, float):
        pts["rr"] = int(float(r["rr"].value) >= 22)
    if "sbp" in r and isinstance(r["sbp"].value, float):
        pts["sbp"] = int(float(r["sbp"].value) <= 100)
    altered = _altered(r)
    if altered is not None:
        pts["mentation"] = int(altered)
    return pts


def _order(patient_id: str, code: str, display: str) -> JsonDict:
    return {"resourceType": "ServiceRequest", "id": new_id(), "status": "draft", "intent": "proposal",
            "priority": "stat", "code": {"coding": [{"system": LOINC, "code": code, "display": display}],
                                         "text": display},
            "subject": {"reference": f"Patient/{patient_id}"}}


class SepsisEarlyWarning(CdsService):
    id = "sepsis-early-warning"
    hook = "patient-view"
    title = "Sepsis early warning (qSOFA + NEWS2)"
    description = ("Scores qSOFA and NEWS2 from the last 24 h of vital signs, GCS/ACVPU and lactate, and "
                   "proposes lactate and blood cultures when the patient is deteriorating.")
    prefetch = {
        "patient": "Patient/{{context.patientId}}",
        "observations": "Observation?patient={{context.patientId}}&code=" + ",".join(ALL_CODES)
                        + "&_sort=-date&_count=200",
    }
    required_prefetch = frozenset({"patient"})

    def invoke(self, request: JsonDict, data: PrefetchData, env: ServiceEnv,
               now: datetime | None = None) -> CdsResponse:
        now = now or datetime.now(UTC)
        patient_id = request["context"]["patientId"]
        readings = latest_readings(data.resources("observations", "Observation"), now)
        n2, qs = news2(readings), qsofa(readings)
        n2_total, qs_total = sum(n2.values()), sum(qs.values())
        lactate = readings.get("lactate")
        lac = float(lactate.value) if lactate and isinstance(lactate.value, float) else None
        red = any(p == 3 for p in n2.values())
        critical = n2_total >= 7 or qs_total >= 2 or (lac is not None and lac >= 4)
        warning = n2_total >= 5 or red or (lac is not None and lac >= 2)
        if not (critical or warning):
            return CdsResponse()
        rows = []
        for param, label in LABELS.items():
            if param not in readings:
                continue
            rd = readings[param]
            key = "consciousness" if param in ("gcs", "avpu") else param
            rows.append(f"| {label} | {rd.value} {rd.unit} | {n2.get(key, '-')} | "
                        f"{qs.get('mentation' if key == 'consciousness' else key, '-')} | "
                        f"{rd.at.isoformat(timespec='minutes')} |")
        detail = (f"NEWS2 **{n2_total}** ({len(n2)}/7 parameters), qSOFA **{qs_total}** ({len(qs)}/3)"
                  + (f", lactate **{lac} mmol/L**" if lac is not None else "") + "\n\n"
                  "| Parameter | Value | NEWS2 | qSOFA | Time |\n|---|---|---|---|---|\n" + "\n".join(rows)
                  + "\n\nqSOFA ≥ 2 or NEWS2 ≥ 7 calls for urgent sepsis assessment.")
        lactate_recent = lactate is not None and now - lactate.at <= timedelta(hours=6)
        actions = []
        if not lactate_recent:
            actions.append(Action("create", "Order a STAT serum lactate",
                                  _order(patient_id, "2524-7", "Lactate [Moles/volume] in Serum or Plasma")))
        actions.append(Action("create", "Order blood cultures before antibiotics",
                              _order(patient_id, "600-7", "Bacteria identified in Blood by Culture")))
        summary = (f"{'Possible sepsis' if critical else 'Deteriorating'}: NEWS2 {n2_total}, qSOFA {qs_total}"
                   + (f", lactate {lac}" if lac is not None else ""))
        card = Card(
            summary=summary, indicator="critical" if critical else "warning", detail=detail,
            source_label="DigitalFront sepsis early warning (qSOFA, NEWS2)",
            source_url="https://www.rcp.ac.uk/improving-care/resources/national-early-warning-score-news-2/",
            suggestions=[Suggestion("Order sepsis work-up (lactate, blood cultures)", actions,
                                    is_recommended=True)],
            selection_behavior="at-most-one",
            override_reasons=[override_reason("sepsis-excluded", "Sepsis already assessed and excluded"),
                              override_reason("workup-done", "Work-up already ordered"),
                              override_reason("palliative", "Comfort care / palliative goals")],
            links=[env.patient_link(patient_id, "Review vitals in DigitalFront")])
        return CdsResponse(cards=[card])


SERVICE = SepsisEarlyWarning()
