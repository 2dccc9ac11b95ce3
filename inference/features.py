"""Readmission-risk features from a patient's FHIR resources.

LACE (Length of stay, Acuity, Comorbidity (Charlson), ED visits in 6 months)
plus age, utilisation and comorbidity flags. The same function feeds training
(with ``as_of`` set to each historical discharge) and serving (CDS Hooks), so
the model never sees features computed differently from how it was trained.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from dateutil import parser as dateparser

FEATURE_NAMES: tuple[str, ...] = (
    "age", "los_days", "lace_l", "lace_a", "lace_c", "lace_e", "lace_score",
    "ed_visits_6m", "inpatient_visits_12m", "encounters_12m", "active_conditions",
    "charlson_index", "chf", "copd", "diabetes", "ckd", "cancer", "dementia",
    "mi", "stroke", "hypertension", "medication_requests_12m",
)

ACUTE_CLASSES = frozenset({"IMP", "EMER", "ACUTE", "NONAC", "OBSENC"})
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})
ED_CLASSES = frozenset({"EMER"})

# Charlson categories: (weight, SNOMED CT codes seen in Synthea, display keywords)
_CHARLSON: dict[str, tuple[int, frozenset[str], tuple[str, ...]]] = {
    "mi": (1, frozenset({"22298006", "401303003", "401314000", "399211009"}), ("myocardial infarction",)),
    "chf": (1, frozenset({"88805009", "84114007"}), ("heart failure",)),
    "stroke": (1, frozenset({"230690007"}), ("stroke", "cerebrovascular")),
    "dementia": (1, frozenset({"26929004", "230265002"}), ("dementia", "alzheimer")),
    "copd": (1, frozenset({"185086009", "87433001"}), ("chronic obstructive", "emphysema")),
    "diabetes": (1, frozenset({"44054006", "46635009"}), ("diabetes",)),
    "diabetes_complicated": (2, frozenset({"368581000119106", "127013003", "422034002",
                                           "90781000119102", "1551000119108", "97331000119101"}),
                             ("due to type 2 diabetes", "diabetic")),
    "ckd": (2, frozenset({"431855005", "431856006", "433144002", "431857002", "46177005"}),
            ("chronic kidney disease", "end stage renal")),
    "cancer": (2, frozenset({"254637007", "254632001", "126906006", "93761005", "109838007",
                             "363406005", "254837009", "92691004", "424132000"}),
               ("malignant", "carcinoma", "neoplasm of")),
    "metastatic": (6, frozenset({"94503003", "94260004"}), ("secondary malignant", "metasta")),
    "liver": (1, frozenset({"128302006", "61977001"}), ("hepatitis c", "cirrhosis")),
}
_HYPERTENSION = (frozenset({"38341003", "59621000"}), ("hypertension",))
_INACTIVE = frozenset({"resolved", "inactive", "remission", "refuted", "entered-in-error"})


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    return _parse_when(value)


@lru_cache(maxsize=1 << 16)
def _parse_when(value: str) -> datetime | None:
    """Parsing dominates feature time (the same dates recur across a history); cached."""
    try:
        dt = dateparser.isoparse(value)
    except (ValueError, OverflowError):
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _period(enc: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    period = enc.get("period") or {}
    start = _when(period.get("start"))
    end = _when(period.get("end")) or start
    return start, end


def _class(enc: dict[str, Any]) -> str:
    cls = enc.get("class") or {}
    return str(cls.get("code", "")).upper()


def _codes(concept: dict[str, Any] | None) -> tuple[set[str], str]:
    concept = concept or {}
    codes = {str(c.get("code")) for c in concept.get("coding", []) if c.get("code")}
    text = " ".join([concept.get("text", "")] + [c.get("display", "") for c in concept.get("coding", [])])
    return codes, text.lower()


def _matches(concept: dict[str, Any] | None, codes: frozenset[str], words: Iterable[str]) -> bool:
    have, text = _codes(concept)
    return bool(have & codes) or any(w in text for w in words)


def _condition_active_at(cond: dict[str, Any], ref: datetime) -> bool:
    onset = _when(cond.get("onsetDateTime") or cond.get("recordedDate"))
    if onset is not None and onset > ref:
        return False
    abated = _when(cond.get("abatementDateTime"))
    if abated is not None and abated <= ref:
        return False
    status = ((cond.get("clinicalStatus") or {}).get("coding") or [{}])[0].get("code")
    if abated is None and status in _INACTIVE:
        return False
    return True


def lace_length_points(los_days: float) -> int:
    days = int(los_days)
    if days < 1:
        return 0
    if days <= 3:
        return days
    if days <= 6:
        return 4
    if days <= 13:
        return 5
    return 7


def lace_comorbidity_points(charlson: int) -> int:
    return charlson if charlson <= 3 else 5


def _age(patient: dict[str, Any] | None, ref: datetime) -> float:
    if not patient or not patient.get("birthDate"):
        return 0.0
    try:
        born = date.fromisoformat(str(patient["birthDate"])[:10]) if len(patient["birthDate"]) >= 10 \
            else date(int(patient["birthDate"][:4]), 1, 1)
    except ValueError:
        return 0.0
    d = ref.date()
    return float(d.year - born.year - ((d.month, d.day) < (born.month, born.day)))


def readmission_features(patient_resources: dict[str, list[dict[str, Any]]],
                         as_of: datetime | None = None) -> dict[str, float]:
    """Features as of ``as_of`` (default: the end of the latest encounter, else now).

    The index stay is the latest encounter that started at or before the
    reference time; only resources dated at or before it are counted.
    """
    encounters = [e for e in patient_resources.get("Encounter", []) if _period(e)[0] is not None]
    encounters.sort(key=lambda e: _period(e)[0] or datetime.min.replace(tzinfo=UTC))
    if as_of is not None:
        ref = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    elif encounters:
        ref = _period(encounters[-1])[1] or datetime.now(UTC)
    else:
        ref = datetime.now(UTC)
    past = [e for e in encounters if (_period(e)[0] or ref) <= ref]
    index = past[-1] if past else None

    los = 0.0
    acute = 0
    if index is not None:
        start, end = _period(index)
        if start and end:
            los = max(0.0, (end - start).total_seconds() / 86400.0)
        acute = 1 if _class(index) in ACUTE_CLASSES else 0

    def count(since: timedelta, classes: frozenset[str] | None) -> int:
        lo = ref - since
        n = 0
        for e in past:
            if e is index:
                continue
            s = _period(e)[0]
            if s is not None and lo <= s <= ref and (classes is None or _class(e) in classes):
                n += 1
        return n

    ed_6m = count(timedelta(days=182), ED_CLASSES)
    inpatient_12m = count(timedelta(days=365), INPATIENT_CLASSES)
    encounters_12m = count(timedelta(days=365), None)

    active = [c for c in patient_resources.get("Condition", []) if _condition_active_at(c, ref)]
    flags: dict[str, int] = {}
    charlson = 0
    for name, (weight, codes, words) in _CHARLSON.items():
        present = any(_matches(c.get("code"), codes, words) for c in active)
        flags[name] = int(present)
        charlson += weight if present else 0
    if flags["diabetes_complicated"]:
        charlson -= 1 if flags["diabetes"] else 0  # count diabetes once, at the higher weight
        flags["diabetes"] = 1
    if flags["metastatic"]:
        charlson -= 2 if flags["cancer"] else 0
        flags["cancer"] = 1
    hypertension = int(any(_matches(c.get("code"), *_HYPERTENSION) for c in active))

    meds_12m = 0
    for m in patient_resources.get("MedicationRequest", []):
        when = _when(m.get("authoredOn"))
        if when is not None and ref - timedelta(days=365) <= when <= ref:
            meds_12m += 1

    patients = patient_resources.get("Patient", [])
    lace_l = lace_length_points(los)
    lace_a = 3 * acute
    lace_c = lace_comorbidity_points(charlson)
    lace_e = min(ed_6m, 4)
    out = {
        "age": _age(patients[0] if patients else None, ref),
        "los_days": round(los, 3),
        "lace_l": lace_l, "lace_a": lace_a, "lace_c": lace_c, "lace_e": lace_e,
        "lace_score": lace_l + lace_a + lace_c + lace_e,
        "ed_visits_6m": ed_6m,
        "inpatient_visits_12m": inpatient_12m,
        "encounters_12m": encounters_12m,
        "active_conditions": len(active),
        "charlson_index": charlson,
        "chf": flags["chf"], "copd": flags["copd"], "diabetes": flags["diabetes"], "ckd": flags["ckd"],
        "cancer": flags["cancer"], "dementia": flags["dementia"], "mi": flags["mi"],
        "stroke": flags["stroke"], "hypertension": hypertension,
        "medication_requests_12m": meds_12m,
    }
    return {k: float(out[k]) for k in FEATURE_NAMES}


def feature_vector(features: dict[str, float]) -> list[float]:
    """Order a feature dict the way the model's ``features`` input expects."""
    return [float(features[name]) for name in FEATURE_NAMES]
