"""Small readers over FHIR JSON that services share (codes, dates, observation values)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

JsonDict = dict[str, Any]
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def parse_dt(value: Any) -> datetime | None:
    """FHIR date/dateTime/instant → aware datetime (dates at 00:00 UTC); None when unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 4:
            return datetime(int(value), 1, 1, tzinfo=UTC)
        if len(value) == 7:
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    except ValueError:
        return None


def codings(concept: Any) -> list[JsonDict]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, dict)]


def has_code(concept: Any, system: str | None, codes: Iterable[str]) -> bool:
    wanted = set(codes)
    return any(c.get("code") in wanted and (system is None or c.get("system") == system)
               for c in codings(concept))


def concept_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for c in codings(concept):
        if c.get("display"):
            return str(c["display"])
    return next((str(c.get("code")) for c in codings(concept) if c.get("code")), "")


def effective_time(obs: JsonDict) -> datetime | None:
    raw = obs.get("effectivePeriod")
    period: JsonDict = raw if isinstance(raw, dict) else {}
    return (parse_dt(obs.get("effectiveDateTime")) or parse_dt(obs.get("effectiveInstant"))
            or parse_dt(period.get("end")) or parse_dt(period.get("start")) or parse_dt(obs.get("issued")))


def quantity(q: Any) -> tuple[float, str] | None:
    if isinstance(q, dict) and isinstance(q.get("value"), int | float) and not isinstance(q["value"], bool):
        return float(q["value"]), str(q.get("code") or q.get("unit") or "")
    return None


def ref_id(ref: Any, resource_type: str | None = None) -> str | None:
    """The id of a relative reference ``Type/id`` (or a full URL ending so)."""
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return None
    parts = ref["reference"].rstrip("/").split("/")
    if len(parts) < 2 or (resource_type and parts[-2] != resource_type):
        return None
    return parts[-1]


def usable_observation(obs: JsonDict) -> bool:
    return obs.get("resourceType") == "Observation" and obs.get("status") in (
        "final", "amended", "corrected", "preliminary")


def age_years(patient: JsonDict | None, at: datetime) -> int | None:
    born = parse_dt((patient or {}).get("birthDate"))
    if born is None:
        return None
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))
