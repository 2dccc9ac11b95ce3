"""Normalisation of search values shared by indexing and querying.

Strings: case- and accent-insensitive; dates: [low, high) ranges in µs since the
epoch from the value's precision; quantities: UCUM canonical units for the
common clinical units; hashes: 64-bit identities in HAPI's style.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache

MIN_US = -62135596800 * 1_000_000  # 0001-01-01
MAX_US = 253402300800 * 1_000_000  # 10000-01-01


@lru_cache(maxsize=262144)
@lru_cache(maxsize=32768)  # parameter identities, codes, statuses and units repeat in every write
def h64(*parts: str | None) -> int:
    """Stable signed 64-bit hash of the joined parts (None and "" differ)."""
    joined = "\x1f".join("\x00" if p is None else p for p in parts)
    return int.from_bytes(hashlib.blake2b(joined.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


@lru_cache(maxsize=65536)
def normalize_string(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


DATE_RE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})(T(?P<H>\d{2})(:(?P<M>\d{2})(:(?P<S>\d{2})(?P<f>\.\d+)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$")


def _to_us(dt: datetime) -> int:
    return int((dt - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


@lru_cache(maxsize=8192)  # a message's resources share a few dates
def date_range(value: str) -> tuple[int, int] | None:
    """The [low, high) interval a FHIR date/dateTime/instant denotes, in µs; None if malformed."""
    m = DATE_RE.match(value.strip())
    if not m:
        return None
    g = m.groupdict()
    try:
        y = int(g["y"])
        tz = UTC
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            hh, mm = g["tz"][1:].split(":")
            tz = __import__("datetime").timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))
        if g["m"] is None:
            lo = datetime(y, 1, 1, tzinfo=tz)
            hi = datetime(y + 1, 1, 1, tzinfo=tz) if y < 9999 else datetime(9999, 12, 31, 23, 59, 59, tzinfo=tz)
        elif g["d"] is None:
            mo = int(g["m"])
            lo = datetime(y, mo, 1, tzinfo=tz)
            hi = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=tz)
        elif g["H"] is None:
            lo = datetime(y, int(g["m"]), int(g["d"]), tzinfo=tz)
            hi = lo + timedelta(days=1)
        else:
            lo = datetime(y, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"] or 0), int(g["S"] or 0), tzinfo=tz)
            if g["f"]:
                frac = g["f"][1:7].ljust(6, "0")
                lo = lo.replace(microsecond=int(frac))
                hi = lo + timedelta(microseconds=10 ** (6 - min(len(g["f"]) - 1, 6)))
            elif g["S"] is not None:
                hi = lo + timedelta(seconds=1)
            else:
                hi = lo + timedelta(minutes=1)
    except (ValueError, OverflowError):
        return None
    return _to_us(lo), _to_us(hi)


def number_range(text: str) -> tuple[Decimal, Decimal, Decimal] | None:
    """(value, low, high): the implicit range of a decimal from its significant digits."""
    try:
        d = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite():
        return None
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    if "e" in text.lower():
        half = Decimal(1).scaleb(exp) / 2
    else:
        half = Decimal(5).scaleb(exp - 1)
    return d, d - half, d + half


# UCUM canonical forms for the units clinical data actually uses: unit -> (canonical unit, factor)
_UCUM: dict[str, tuple[str, Decimal]] = {}
for unit, canon, factor in [
    ("kg", "g", "1000"), ("g", "g", "1"), ("mg", "g", "0.001"), ("ug", "g", "0.000001"),
    ("ng", "g", "1e-9"), ("pg", "g", "1e-12"), ("[lb_av]", "g", "453.59237"), ("[oz_av]", "g", "28.349523125"),
    ("L", "L", "1"), ("l", "L", "1"), ("dL", "L", "0.1"), ("mL", "L", "0.001"), ("ml", "L", "0.001"),
    ("uL", "L", "0.000001"), ("fL", "L", "1e-15"),
    ("m", "m", "1"), ("cm", "m", "0.01"), ("mm", "m", "0.001"), ("km", "m", "1000"), ("[in_i]", "m", "0.0254"),
    ("[ft_i]", "m", "0.3048"),
    ("s", "s", "1"), ("ms", "s", "0.001"), ("min", "s", "60"), ("h", "s", "3600"), ("d", "s", "86400"),
    ("wk", "s", "604800"), ("mo", "s", "2629800"), ("a", "s", "31557600"),
    ("mmol/L", "mol/L", "0.001"), ("umol/L", "mol/L", "0.000001"), ("mol/L", "mol/L", "1"),
    ("g/L", "g/L", "1"), ("g/dL", "g/L", "10"), ("mg/dL", "g/L", "0.01"), ("mg/L", "g/L", "0.001"),
    ("kg/m2", "g/m2", "1000"), ("mm[Hg]", "mm[Hg]", "1"), ("/min", "/s", "0.0166666666666666667"),
    ("Cel", "Cel", "1"), ("%", "%", "1"),
]:
    _UCUM[unit] = (canon, Decimal(factor))

UCUM_SYSTEM = "http://unitsofmeasure.org"


def ucum_canonical(value: Decimal, code: str | None) -> tuple[Decimal, str] | None:
    if not code or code not in _UCUM:
        return None
    canon, factor = _UCUM[code]
    return value * factor, canon


def escape_split(value: str, sep: str) -> list[str]:
    """Split on ``sep`` honouring the FHIR search escapes ``\\,`` ``\\|`` ``\\$`` ``\\\\``."""
    out, cur, i = [], [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            cur.append(value[i + 1])
            i += 2
            continue
        if c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def has_unescaped(value: str, sep: str) -> bool:
    return len(escape_split(value, sep)) > 1


def split_unescaped_keep(value: str, sep: str) -> list[str]:
    """Split on unescaped ``sep`` but keep the other escapes for a later split."""
    out, cur, i = [], "", 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            cur += value[i:i + 2]
            i += 2
            continue
        if c == sep:
            out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    out.append(cur)
    return out


def unescape(value: str) -> str:
    return "".join(escape_split(value, "\x00"))


def escape(value: str) -> str:
    """A literal value inside a search parameter (the inverse of ``unescape``): without it a ``,`` in an
    identifier is an OR, and a ``|`` splits system from code."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")
