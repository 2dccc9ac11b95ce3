"""The LACE index (van Walraven et al., CMAJ 2010): the transparent readmission baseline.

L length of stay, A acute (emergent) admission, C Charlson comorbidity index,
E emergency visits in the previous 6 months. Kept independent of the inference
package so the LACE card works when no model is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cds_hooks.fhirdata import codings, concept_text, parse_dt

JsonDict = dict[str, Any]
INPATIENT = frozenset({"IMP", "ACUTE", "NONAC"})
EMERGENCY = frozenset({"EMER"})
# Charlson categories by display keywords (SNOMED displays from Synthea and common EHR text).
CHARLSON: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("myocardial infarction", 1, ("myocardial infarction",)),
    ("heart failure", 1, ("heart failure",)),
    ("peripheral vascular disease", 1, ("peripheral vascular", "peripheral arterial")),
    ("cerebrovascular disease", 1, ("stroke", "cerebrovascular", "transient ischemic")),
    ("dementia", 1, ("dementia", "alzheimer")),
    ("chronic pulmonary disease", 1, ("chronic obstructive", "emphysema", "chronic bronchitis", "asthma")),
    ("connective tissue disease", 1, ("rheumatoid arthritis", "lupus erythematosus")),
    ("peptic ulcer disease", 1, ("peptic ulcer", "gastric ulcer", "duodenal ulcer")),
    ("liver disease", 1, ("hepatitis c", "cirrhosis", "chronic liver")),
    ("diabetes", 1, ("diabetes",)),
    ("diabetes with end-organ damage", 2, ("diabetic", "due to type 2 diabetes", "due to diabetes")),
    ("hemiplegia", 2, ("hemiplegia", "paraplegia")),
    ("renal disease", 2, ("chronic kidney disease", "end stage renal", "end-stage renal")),
    ("malignancy", 2, ("malignant", "carcinoma", "lymphoma", "leukemia", "neoplasm of")),
    ("metastatic solid tumour", 6, ("metasta", "secondary malignant")),
    ("AIDS", 6, ("acquired immune deficiency", "aids")),
)
INACTIVE = frozenset({"resolved", "inactive", "remission", "refuted", "entered-in-error"})


@dataclass
class Lace:
    length: int
    acuity: int
    comorbidity: int
    emergency: int
    los_days: float
    charlson: int
    comorbidities: list[str] = field(default_factory=list)
    ed_visits: int = 0
    index_encounter: JsonDict | None = None

    @property
    def score(self) -> int:
        return self.length + self.acuity + self.comorbidity + self.emergency

    @property
    def risk(self) -> str:
        return "high" if self.score >= 10 else "moderate" if self.score >= 5 else "low"


def length_points(days: float) -> int:
    d = int(days)
    if d < 1:
        return 0
    if d <= 3:
        return d
    if d <= 6:
        return 4
    if d <= 13:
        return 5
    return 7


def _cls(enc: JsonDict) -> str:
    return str((enc.get("class") or {}).get("code", "")).upper()


def _start_end(enc: JsonDict, now: datetime) -> tuple[datetime | None, datetime]:
    period = enc.get("period") or {}
    start = parse_dt(period.get("start"))
    end = parse_dt(period.get("end")) or now
    return start, end


def index_stay(encounters: list[JsonDict], now: datetime, encounter_id: str | None,
               window: timedelta = timedelta(days=30)) -> JsonDict | None:
    """The stay the risk is about: the context encounter, else the latest inpatient stay
    in progress or ended within ``window``."""
    if encounter_id:
        for e in encounters:
            if e.get("id") == encounter_id and _cls(e) in INPATIENT | EMERGENCY:
                return e
    candidates = []
    for e in encounters:
        start, end = _start_end(e, now)
        if _cls(e) in INPATIENT and start is not None and now - end <= window and start <= now:
            candidates.append((start, e))
    return max(candidates, key=lambda p: p[0])[1] if candidates else None


def charlson(conditions: list[JsonDict], at: datetime) -> tuple[int, list[str]]:
    found: dict[str, int] = {}
    for c in conditions:
        status = {x.get("code") for x in codings(c.get("clinicalStatus"))}
        abated = parse_dt(c.get("abatementDateTime"))
        onset = parse_dt(c.get("onsetDateTime") or c.get("recordedDate"))
        if status & INACTIVE or (abated and abated <= at) or (onset and onset > at):
            continue
        text = concept_text(c.get("code")).lower() + " " + " ".join(
            str(x.get("display") or "").lower() for x in codings(c.get("code")))
        for name, weight, words in CHARLSON:
            if any(w in text for w in words):
                found[name] = weight
    if "diabetes with end-organ damage" in found:
        found.pop("diabetes", None)
    if "metastatic solid tumour" in found:
        found.pop("malignancy", None)
    return sum(found.values()), sorted(found)


def lace(encounters: list[JsonDict], conditions: list[JsonDict], now: datetime,
         encounter_id: str | None = None) -> Lace | None:
    stay = index_stay(encounters, now, encounter_id)
    if stay is None:
        return None
    start0, end = _start_end(stay, now)
    start = start0 or end
    los = max(0.0, (end - start).total_seconds() / 86400)
    admit = {x.get("code") for x in codings((stay.get("hospitalization") or {}).get("admitSource"))}
    priority = {x.get("code") for x in codings(stay.get("priority"))}
    via_ed, ed = False, 0
    for e in encounters:
        if e is stay or _cls(e) not in EMERGENCY:
            continue
        s, s_end = _start_end(e, now)
        if s is None:
            continue
        if timedelta(0) <= start - s_end <= timedelta(hours=24):
            via_ed = True  # admitted through the ED
        elif start - timedelta(days=182) <= s < start:
            ed += 1
    acute = _cls(stay) in EMERGENCY or "emd" in admit or via_ed or bool(priority & {"EM", "UR"})
    cci, names = charlson(conditions, end)
    return Lace(length=length_points(los), acuity=3 if acute else 0, comorbidity=cci if cci <= 3 else 5,
                emergency=min(ed, 4), los_days=round(los, 1), charlson=cci, comorbidities=names,
                ed_visits=ed, index_encounter=stay)
