"""Instants as integer microseconds since the epoch (storage) and FHIR strings (wire)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int((dt - EPOCH) / timedelta(microseconds=1))


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def instant(us: int) -> str:
    """FHIR instant with millisecond precision in UTC."""
    return from_us(us).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_us() -> int:
    return to_us(datetime.now(UTC))
