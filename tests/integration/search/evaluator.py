"""A deliberately simple, independent FHIR R4 search evaluator over raw JSON (search.html).

It shares no code with ``fhir_server.search`` or ``fhir_server.storage``: it reads the
official SearchParameter expressions from the package itself, walks the JSON with its own
tiny path logic (choice elements by key prefix, ``as``/``ofType``, ``where(resolve() is T)``,
``where(x='y')``, ``extension('url')``), falls back to fhirpathpy for anything else, and
matches each parameter type by a direct reading of the spec, resource by resource.
Slow and obvious on purpose: it is the oracle the SQL engine is compared with.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

JsonDict = dict[str, Any]
INF = float("inf")
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
REF = re.compile(r"^(?:https?://\S+?/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")

# UCUM units the evaluator understands, written independently: unit -> (dimension, factor to base)
UNITS: dict[str, tuple[str, Decimal]] = {
    "kg": ("mass", Decimal(1000)), "g": ("mass", Decimal(1)), "mg": ("mass", Decimal("0.001")),
    "ug": ("mass", Decimal("0.000001")), "ng": ("mass", Decimal("1e-9")), "pg": ("mass", Decimal("1e-12")),
    "[lb_av]": ("mass", Decimal("453.59237")), "L": ("vol", Decimal(1)), "dL": ("vol", Decimal("0.1")),
    "mL": ("vol", Decimal("0.001")), "m": ("len", Decimal(1)), "cm": ("len", Decimal("0.01")),
    "mm": ("len", Decimal("0.001")), "g/L": ("mass/vol", Decimal(1)), "g/dL": ("mass/vol", Decimal(10)),
    "mg/dL": ("mass/vol", Decimal("0.01")), "mg/L": ("mass/vol", Decimal("0.001")),
}


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


# ------------------------------------------------------------------ the evaluator
class Evaluator:
    def __init__(self, resources: list[JsonDict], params: dict[tuple[str, str], JsonDict],
                 value_sets: list[JsonDict] = (), code_systems: list[JsonDict] = ()) -> None:  # type: ignore[assignment]
        self.by_type: dict[str, dict[str, JsonDict]] = defaultdict(dict)
        for r in resources:
            self.by_type[r["resourceType"]][r["id"]] = r
        self.params = params
        # explicit-concept value sets only: url -> {(system, code)}
        self.value_sets = {vs["url"]: {(inc["system"], c["code"]) for inc in vs["compose"]["include"]
                                       for c in inc.get("concept", [])} for vs in value_sets}
        self.parent: dict[tuple[str, str], str | None] = {}
        for cs in code_systems:
            stack = [(c, None) for c in cs.get("concept", [])]
            while stack:
                c, up = stack.pop()
                self.parent[(cs["url"], c["code"])] = up
                stack.extend((k, c["code"]) for k in c.get("concept", []))
        self.now = datetime.now(UTC).timestamp()
        self._cache: dict[tuple[str, str, str], list[tuple[Any, str | None]]] = {}

    # --- parameter lookup and values
    def param(self, rt: str, code: str) -> JsonDict:
        sp = self.params.get((rt, code)) or self.params.get(("Resource", code)) or self.params.get(
            ("DomainResource", code))
        if sp is None:
            raise KeyError(f"{rt}.{code}")
        return sp

    def nodes(self, res: JsonDict, code: str) -> list[tuple[Any, str | None]]:
        key = (res["resourceType"], res["id"], code)
        if key not in self._cache:
            sp = self.param(res["resourceType"], code)
            expr = sp.get("expression") or ""
            branches = [b for b in split_union(expr) if re.match(
                rf"^\(?\s*({res['resourceType']}|Resource|DomainResource)\b", b)]
            self._cache[key] = evaluate(" | ".join(branches), res) if branches else []
        return self._cache[key]

    def refs(self, res: JsonDict, code: str) -> list[tuple[str | None, str | None, str]]:
        out = []
        for n, _ in self.nodes(res, code):
            ref = n.get("reference") if isinstance(n, dict) else n if isinstance(n, str) else None
            if not isinstance(ref, str) or ref.startswith("#"):
                continue
            m = REF.match(ref)
            out.append((m.group(1), m.group(2), ref) if m else (None, None, ref))
        return out

    # --- search
    def search(self, rt: str, query: list[tuple[str, str]]) -> set[str]:
        ids = set(self.by_type.get(rt, {}))
        for name, value in query:
            if name.startswith("_") and name.split(":")[0] in ("_sort", "_count", "_include", "_revinclude",
                                                                    "_total", "_summary", "_elements"):
                continue
            ids = {i for i in ids if self.matches(self.by_type[rt][i], name, value)}
        return ids

    def matches(self, res: JsonDict, name: str, value: str) -> bool:
        rt = res["resourceType"]
        if name.startswith("_has:"):
            _, src_type, refp, rest = name.split(":", 3)
            return any(self.matches(other, rest, value) for other in self.by_type.get(src_type, {}).values()
                       if any(t == rt and i == res["id"] for t, i, _ in self.refs(other, refp)))
        head, dot, rest = name.partition(".")
        code, _, mod = head.partition(":")
        if dot:
            for ttype, tid, _ in self.refs(res, code):
                if ttype is None or (mod and ttype != mod):
                    continue
                target = self.by_type.get(ttype, {}).get(tid or "")
                if target is None:
                    continue
                try:
                    if self.matches(target, rest, value):
                        return True
                except KeyError:
                    continue
            return False
        if code == "_id":
            return res["id"] in [unesc(v) for v in split(value, ",")]
        if code == "_list":
            for lid in split(value, ","):
                lst = self.by_type.get("List", {}).get(lid) or {}
                for e in lst.get("entry", []):
                    m = REF.match(str(e.get("item", {}).get("reference", "")))
                    if m and m.groups() == (rt, res["id"]):
                        return True
            return False
        if code in ("_text", "_content"):
            return self.fulltext(res, code, value)
        sp = self.param(rt, code)
        kind = sp["type"]
        if mod == "missing":
            present = bool(self.values_present(res, code, kind))
            return present if value == "false" else not present
        if mod == "not":
            return not any(self.one(res, code, kind, "", v) for v in split(value, ","))
        if mod == "not-in":
            return not any(self.one(res, code, kind, "in", v) for v in split(value, ","))
        return any(self.one(res, code, kind, mod, v) for v in split(value, ","))

    def values_present(self, res: JsonDict, code: str, kind: str) -> list[Any]:
        nodes = self.nodes(res, code)
        if kind == "string":
            return [s for n, _ in nodes for s in strings(n)]
        if kind == "token":
            return [t for n, _ in nodes for t in tokens(n)]
        if kind == "reference":
            return self.refs(res, code)
        if kind == "date":
            return [d for n, _ in nodes for d in dates(n)]
        return nodes

    def one(self, res: JsonDict, code: str, kind: str, mod: str, raw: str) -> bool:
        nodes = self.nodes(res, code)
        if kind == "string":
            v = norm(unesc(raw))
            vals = [s for n, _ in nodes for s in strings(n)]
            if mod == "exact":
                return unesc(raw) in vals
            if mod == "contains":
                return any(v in norm(s) for s in vals)
            return any(norm(s).startswith(v) for s in vals)
        if kind == "token":
            if mod == "text":
                v = norm(unesc(raw))
                return any(norm(t).startswith(v) or f" {v}" in norm(t) for n, _ in nodes for t in token_texts(n))
            if mod == "of-type":
                sys_, tcode, val = [unesc(p) for p in split(raw, "|")]
                return any(isinstance(n, dict) and n.get("value") == val and any(
                    c.get("system") == sys_ and c.get("code") == tcode for c in (n.get("type") or {}).get(
                        "coding", [])) for n, _ in nodes)
            if mod == "in":
                members = self.value_sets[raw]
                return any((s, c) in members for n, _ in nodes for s, c in tokens(n))
            if mod in ("below", "above"):
                system, wanted = [unesc(p) for p in split(raw, "|")]
                return any(s == system and (self._under(system, c, wanted) if mod == "below"
                                            else self._under(system, wanted, c))
                           for n, _ in nodes for s, c in tokens(n))
            parts = [unesc(p) for p in split(raw, "|")]
            toks = [t for n, _ in nodes for t in tokens(n)]
            if len(parts) == 1:
                return any(c == parts[0] for _, c in toks)
            s, c = parts
            if s == "":
                return any(ts is None and tc == c for ts, tc in toks)
            if c == "":
                return any(ts == s for ts, _ in toks)
            return any(ts == s and tc == c for ts, tc in toks)
        if kind == "reference":
            v = unesc(raw)
            if mod == "identifier":
                parts = [unesc(p) for p in split(raw, "|")]
                idents = [n["identifier"] for n, _ in nodes if isinstance(n, dict) and n.get("identifier")]
                return any((len(parts) == 1 and i.get("value") == parts[0]) or
                           (len(parts) == 2 and i.get("system") == parts[0] and i.get("value") == parts[1])
                           for i in idents)
            for ttype, tid, ref in self.refs(res, code):
                if "://" in v:
                    if ref == v:
                        return True
                elif "/" in v:
                    vm = REF.match(v)
                    if vm and (ttype, tid) == vm.groups() and "://" not in ref:
                        return True
                elif tid == v and (not mod or ttype == mod) and "://" not in ref:
                    return True
            return False
        if kind == "date":
            prefix, v = prefixed(raw)
            q = date_bounds(v)
            assert q is not None, raw
            return any(date_match(prefix, d, q, self.now) for n, _ in nodes for d in dates(n))
        if kind == "number":
            prefix, v = prefixed(raw)
            return any(num_match(prefix, d, v) for n, _ in nodes if (d := dec(n)) is not None)
        if kind == "quantity":
            return any(self.quantity_match(n, raw) for n, _ in nodes)
        if kind == "uri":
            v = unesc(raw)
            vals = [n for n, _ in nodes if isinstance(n, str)]
            if mod == "below":
                return any(u.startswith(v) for u in vals)
            if mod == "above":
                return any(v == u or v.startswith(u + "/") for u in vals)
            return v in vals
        if kind == "composite":
            return self.composite(res, code, raw)
        raise AssertionError(f"unsupported type {kind}")

    def _under(self, system: str, code: str, ancestor: str) -> bool:
        """code is ancestor or one of its descendants in the loaded CodeSystem."""
        cur: str | None = code
        while cur is not None:
            if cur == ancestor:
                return True
            cur = self.parent.get((system, cur))
        return False

    def quantity_match(self, node: Any, raw: str) -> bool:
        if not isinstance(node, dict) or dec(node.get("value")) is None:
            return False
        parts = [unesc(p) for p in split(raw, "|")]
        prefix, v = prefixed(parts[0])
        system, code = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
        value = dec(node["value"])
        assert value is not None
        ncode = node.get("code") or node.get("unit")
        if code and system in ("", "http://unitsofmeasure.org") and code in UNITS:
            if ncode not in UNITS or UNITS[ncode][0] != UNITS[code][0]:
                return False
            factor = UNITS[code][1]
            return num_match(prefix, value * UNITS[ncode][1] / factor, v)
        if code and code != ncode:
            return False
        if system and system != node.get("system"):
            return False
        return num_match(prefix, value, v)

    def composite(self, res: JsonDict, code: str, raw: str) -> bool:
        sp = self.param(res["resourceType"], code)
        first, second = split(raw, "$")
        comps = sp["component"]
        types = [self._component_type(c["definition"]) for c in comps]
        for node, _ in evaluate(sp["expression"], res):
            c1 = evaluate(comps[0]["expression"], node, relative=True)
            c2 = evaluate(comps[1]["expression"], node, relative=True)
            if not self._match_nodes(c1, types[0], first):
                continue
            if self._match_nodes(c2, types[1], second):
                return True
        return False

    def _component_type(self, url: str) -> str:
        for sp in self.params.values():
            if sp["url"] == url:
                return str(sp["type"])
        raise KeyError(url)

    def _match_nodes(self, nodes: list[tuple[Any, str | None]], kind: str, raw: str) -> bool:
        if kind == "token":
            parts = [unesc(p) for p in split(raw, "|")]
            toks = [t for n, _ in nodes for t in tokens(n)]
            return any(c == parts[-1] and (len(parts) == 1 or s == parts[0]) for s, c in toks)
        if kind == "quantity":
            return any(self.quantity_match(n, raw) for n, _ in nodes)
        if kind == "date":
            prefix, v = prefixed(raw)
            q = date_bounds(v)
            assert q
            return any(date_match(prefix, d, q, self.now) for n, _ in nodes for d in dates(n))
        raise AssertionError(kind)

    def fulltext(self, res: JsonDict, code: str, raw: str) -> bool:
        if code == "_text":
            div = (res.get("text") or {}).get("div", "")
            texts = [re.sub(r"<[^>]+>", " ", div)]
        else:
            texts = list(_all_strings(res))
        words = set(re.findall(r"\w+", norm(" ".join(texts))))
        return any(all(w in words for w in re.findall(r"\w+", norm(v))) for v in split(raw, ","))

    # --- sorting and includes
    def sort_key(self, res: JsonDict, code: str, descending: bool) -> Any:
        if code == "_id":
            return res["id"]
        sp = self.param(res["resourceType"], code)
        nodes = self.nodes(res, code)
        if sp["type"] == "date":
            ds = [d for n, _ in nodes for d in dates(n)]
            if not ds:
                return None
            return max(d[1] for d in ds) if descending else min(d[0] for d in ds)
        if sp["type"] == "string":
            ss = [norm(s) for n, _ in nodes for s in strings(n)]
            return (max(ss) if descending else min(ss)) if ss else None
        if sp["type"] == "token":
            cs = [c for n, _ in nodes for _, c in tokens(n)]
            return (max(cs) if descending else min(cs)) if cs else None
        if sp["type"] in ("number", "quantity"):
            ns = [d for n, _ in nodes if (d := dec(n.get("value") if isinstance(n, dict) else n)) is not None]
            return (max(ns) if descending else min(ns)) if ns else None
        raise AssertionError(sp["type"])

    def include(self, found: set[tuple[str, str]], spec: str, reverse: bool) -> set[tuple[str, str]]:
        src, code, *target = spec.split(":")
        out = set()
        if not reverse:
            for t, i in found:
                if src != "*" and t != src:
                    continue
                res = self.by_type[t][i]
                codes = [code] if code != "*" else [c for (b, c), sp in self.params.items()
                                                    if b == t and sp["type"] == "reference"]
                for c in codes:
                    for tt, ti, _ in self.refs(res, c):
                        if tt and (not target or tt == target[0]) and ti in self.by_type.get(tt, {}):
                            out.add((tt, ti))
        else:
            srcs = [src] if src != "*" else list(self.by_type)
            for other in (o for s in srcs for o in self.by_type.get(s, {}).values()):
                st = other["resourceType"]
                codes = [code] if code != "*" else [c for (b, c), sp in self.params.items()
                                                    if b == st and sp["type"] == "reference"]
                for c in codes:
                    if any((tt, ti) in found and (not target or tt == target[0]) for tt, ti, _ in self.refs(other, c)):
                        out.add((st, other["id"]))
        return out


def _all_strings(node: Any) -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in ("reference", "system", "url", "id", "resourceType", "meta", "div"):
                yield from _all_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _all_strings(v)
    elif isinstance(node, str):
        yield node
