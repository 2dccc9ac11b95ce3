"""The evaluator's own path walking and per-type value reading (no code shared with fhir_server)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

JsonDict = dict[str, Any]
INF = float("inf")
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
REF = re.compile(r"^(?:https?://\S+?/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")


# ------------------------------------------------------------------ escaping
def split(value: str, sep: str) -> list[str]:
    """Split on unescaped ``sep``, keeping escapes for later splits."""
    out, cur, i = [], "", 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            cur += value[i:i + 2]
            i += 2
            continue
        if value[i] == sep:
            out.append(cur)
            cur = ""
        else:
            cur += value[i]
        i += 1
    return out + [cur]


def unesc(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def norm(s: str) -> str:
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    return " ".join(s.casefold().split())


# ------------------------------------------------------------------ path walking
def _children(node: Any, name: str) -> list[tuple[Any, str | None]]:
    if not isinstance(node, dict):
        return []
    if name in node:
        v = node[name]
        return [(x, None) for x in (v if isinstance(v, list) else [v]) if x is not None]
    out: list[tuple[Any, str | None]] = []
    for k, v in node.items():  # choice element: valueQuantity, effectiveDateTime, ...
        if k.startswith(name) and len(k) > len(name) and k[len(name)].isupper():
            tname = k[len(name):]
            out.extend((x, tname) for x in (v if isinstance(v, list) else [v]) if x is not None)
    return out


TOKEN = re.compile(r"""(?:
    \s+as\s+(?P<as2>\w+) | \.as\((?P<as>\w+)\) | \.ofType\((?P<of>\w+)\)
  | \.where\(resolve\(\)\s+is\s+(?P<res>\w+)\)
  | \.where\((?P<wf>\w+)\s*=\s*'(?P<wv>[^']*)'\)
  | \.extension\('(?P<ext>[^']*)'\)
  | \.?(?P<name>[A-Za-z_]\w*)
)""", re.VERBOSE)


def _unwrap(e: str) -> str:
    """Drop one pair of parentheses around the whole expression."""
    if not e.startswith("("):
        return e
    depth = 0
    for i, ch in enumerate(e):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return e[1:-1].strip() if i == len(e) - 1 else e
    return e


def walk(expr: str, start: Any, root: str | None) -> list[tuple[Any, str | None]] | None:
    """Evaluate one simple path; None when it is not simple (caller falls back to fhirpathpy)."""
    e = _unwrap(expr.strip())
    nodes: list[tuple[Any, str | None]] = [(start, root)]
    pos, first = 0, root is not None
    while pos < len(e):
        m = TOKEN.match(e, pos)
        if not m or m.end() == pos:
            return None
        pos = m.end()
        if m.group("name"):
            name = m.group("name")
            if first:
                first = False
                if name in (root, "Resource", "DomainResource"):
                    continue
                return []
            nodes = [c for n, _ in nodes for c in _children(n, name)]
        elif m.group("as") or m.group("as2") or m.group("of"):
            want = (m.group("as") or m.group("as2") or m.group("of")).lower()
            nodes = [(n, t) for n, t in nodes if (t or "").lower() == want]
        elif m.group("res"):
            want = m.group("res")
            nodes = [(n, t) for n, t in nodes if isinstance(n, dict)
                     and (rm := REF.match(str(n.get("reference", "")))) and rm.group(1) == want]
        elif m.group("wf"):
            nodes = [(n, t) for n, t in nodes if isinstance(n, dict) and n.get(m.group("wf")) == m.group("wv")]
        elif m.group("ext") is not None:
            exts = [x for n, _ in nodes if isinstance(n, dict) for x in n.get("extension", [])
                    if x.get("url") == m.group("ext")]
            nodes = []
            for x in exts:
                vals = [(v, k[5:]) for k, v in x.items() if k.startswith("value")]
                nodes.extend(vals or [(x, "Extension")])
    return nodes


def split_union(expr: str) -> list[str]:
    out: list[str] = []
    depth, cur = 0, ""
    for ch in expr:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in out + [cur] if p.strip()]


_fp_cache: dict[str, Any] = {}


def evaluate(expr: str, resource: JsonDict, relative: bool = False) -> list[tuple[Any, str | None]]:
    out: list[tuple[Any, str | None]] = []
    root = None if relative else resource.get("resourceType")
    for branch in split_union(expr):
        got = walk(branch, resource, root)
        if got is None:
            import fhirpathpy

            fn = _fp_cache.setdefault(branch, fhirpathpy.compile(branch))
            try:
                got = [(v, None) for v in fn(resource)]
            except Exception:  # noqa: BLE001 - an expression fhirpathpy cannot run matches nothing
                got = []
        out.extend(got)
    return out


# ------------------------------------------------------------------ value extraction by type
def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if not isinstance(node, dict):
        return []
    if any(k in node for k in ("family", "given")):
        keys = ["text", "family", "given", "prefix", "suffix"]
    elif any(k in node for k in ("line", "city", "state", "postalCode", "country", "district")):
        keys = ["text", "line", "city", "district", "state", "postalCode", "country"]
    else:
        keys = [k for k in node if k not in ("id", "extension", "url", "system", "use")]
    out: list[str] = []
    for k in keys:
        v = node.get(k)
        out.extend(x for x in (v if isinstance(v, list) else [v]) if isinstance(x, str))
    return out


def tokens(node: Any) -> list[tuple[str | None, str]]:
    if isinstance(node, bool):
        return [(None, "true" if node else "false")]
    if isinstance(node, str | int):
        return [(None, str(node))]
    if not isinstance(node, dict):
        return []
    if "coding" in node:
        return [(c.get("system"), c["code"]) for c in node["coding"] if "code" in c]
    if "code" in node:
        return [(node.get("system"), str(node["code"]))]
    if "value" in node:
        return [(node.get("system"), str(node["value"]))]
    return []


def token_texts(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    out = [node["text"]] if isinstance(node.get("text"), str) else []
    out += [c["display"] for c in node.get("coding", []) if isinstance(c.get("display"), str)]
    if isinstance(node.get("display"), str):
        out.append(node["display"])
    if isinstance((node.get("type") or {}).get("text"), str):
        out.append(node["type"]["text"])
    return out


DATE = re.compile(r"^(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(\.\d+)?)?(Z|[+-]\d\d:\d\d)?)?)?)?$")


def date_bounds(text: str) -> tuple[float, float] | None:
    """[low, high) in seconds since the epoch; a value without zone is read as UTC."""
    m = DATE.match(text.strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    zone = UTC
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    if mo is None:
        lo, hi = datetime(int(y), 1, 1, tzinfo=zone), datetime(int(y) + 1, 1, 1, tzinfo=zone)
    elif d is None:
        lo = datetime(int(y), int(mo), 1, tzinfo=zone)
        hi = datetime(int(y) + int(mo) // 12, int(mo) % 12 + 1, 1, tzinfo=zone)
    elif hh is None:
        lo = datetime(int(y), int(mo), int(d), tzinfo=zone)
        hi = lo + timedelta(days=1)
    else:
        lo = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss or 0), tzinfo=zone)
        if frac:
            lo += timedelta(microseconds=int(frac[1:7].ljust(6, "0")))
            hi = lo + timedelta(microseconds=10 ** (6 - min(len(frac) - 1, 6)))
        else:
            hi = lo + (timedelta(seconds=1) if ss else timedelta(minutes=1))
    return lo.timestamp(), hi.timestamp()


def dates(node: Any) -> list[tuple[float, float]]:
    if isinstance(node, str):
        b = date_bounds(node)
        return [b] if b else []
    if not isinstance(node, dict):
        return []
    if "start" in node or "end" in node:
        s = date_bounds(node["start"]) if "start" in node else None
        e = date_bounds(node["end"]) if "end" in node else None
        return [(s[0] if s else -INF, e[1] if e else INF)]
    if "event" in node or "repeat" in node:
        rs = [b for ev in node.get("event", []) if (b := date_bounds(ev))]
        rs += dates((node.get("repeat") or {}).get("boundsPeriod") or {}) if (node.get("repeat") or {}).get(
            "boundsPeriod") else []
        return [(min(r[0] for r in rs), max(r[1] for r in rs))] if rs else []
    return []


def date_match(prefix: str, t: tuple[float, float], q: tuple[float, float], now: float) -> bool:
    (tlo, thi), (qlo, qhi) = t, q
    contained = tlo >= qlo and thi <= qhi
    return {
        "eq": contained, "ne": not contained,
        "gt": thi > qhi, "lt": tlo < qlo,
        "ge": thi > qhi or contained, "le": tlo < qlo or contained,
        "sa": tlo >= qhi, "eb": thi <= qlo,
        "ap": tlo < qhi + max(abs(now - qlo) / 10, 86400) and thi > qlo - max(abs(now - qlo) / 10, 86400),
    }[prefix]


def prefixed(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] in "-."):
        return value[:2], value[2:]
    return "eq", value


def dec(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return Decimal(str(v))
    except InvalidOperation:
        return None


def num_match(prefix: str, target: Decimal, text: str) -> bool:
    q = Decimal(text)
    exp = q.as_tuple().exponent
    assert isinstance(exp, int)
    half = Decimal(5).scaleb(exp - 1)
    return {
        "eq": q - half <= target < q + half, "ne": not (q - half <= target < q + half),
        "gt": target > q, "lt": target < q, "ge": target >= q, "le": target <= q,
        "sa": target > q, "eb": target < q, "ap": abs(target - q) <= abs(q) / 10,
    }[prefix]
