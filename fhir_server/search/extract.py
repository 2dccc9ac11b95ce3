"""Resource -> search index rows, one list per index table (HAPI's HFJ_SPIDX_* style).

Each SearchParameter part is either compiled steps (walk the JSON directly,
knowing each value's FHIR type) or a FHIRPath expression for fhirpathpy.
Rows carry hashed identities so that queries hit a single index.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_server.search.registry import Part, SearchParam, SearchParamRegistry
from fhir_server.search.shared_rows import SharedRows
from fhir_server.search.values import (
    MAX_US,
    MIN_US,
    date_range,
    h64,
    normalize_string,
    ucum_canonical,
)

log = logging.getLogger(__name__)

Node = tuple[Any, str | None]  # (JSON value, FHIR type if known)

SKIP_PARAMS = frozenset({"_id", "_lastUpdated"})  # answered from the resource table itself
STRING_MAX = 200
CANONICAL_MARK = h64("ucum-canonical")  # idx_composite.c2_sys_value of a quantity row in canonical units
REF_RE = re.compile(r"^(?:(?P<base>https?://.+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
                    r"(?:/_history/[^/]+)?$")


@dataclass
class IndexRows:
    string: list[tuple[int, str, str]] = field(default_factory=list)
    token: list[tuple[int, int, int, str | None, str | None]] = field(default_factory=list)
    reference: list[tuple[int, str | None, str | None, str | None]] = field(default_factory=list)
    date: list[tuple[int, int, int]] = field(default_factory=list)
    number: list[tuple[int, float]] = field(default_factory=list)
    quantity: list[tuple[int, float, int | None, int | None, float | None, str | None]] = field(
        default_factory=list)
    uri: list[tuple[int, str]] = field(default_factory=list)
    composite: list[tuple[int, int, int, int | None, int | None, float | None, int | None, int | None,
                          int | None]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # narrative, for _text
    content: list[str] = field(default_factory=list)  # all strings, for _content


def identity(resource_type: str, code: str) -> int:
    return h64(resource_type, code)


def token_row(ident: int, system: str | None, code: str) -> tuple[int, int, int, str | None, str]:
    """One ``idx_token`` row: the parameter, the hashes of system|code and of code, the values."""
    sident = str(ident)
    return ident, h64(sident, system or "", code), h64(sident, code), system, code[:STRING_MAX]


# ---------------------------------------------------------------- evaluation
def walk(steps: list[dict[str, Any]], start: list[Node]) -> list[Node]:
    nodes = start
    for st in steps:
        op = st["op"]
        out: list[Node] = []
        if op == "field":
            for val, _t in nodes:
                if not isinstance(val, dict):
                    continue
                for cand in st["cands"]:
                    v = val.get(cand["key"])
                    if v is None:
                        continue
                    if isinstance(v, list):
                        out.extend((x, cand["type"]) for x in v if x is not None)
                    else:
                        out.append((v, cand["type"]))
        elif op == "resolve_is":
            want = st["type"]
            for val, t in nodes:
                ref = val.get("reference") if isinstance(val, dict) else None
                if isinstance(ref, str):
                    m = REF_RE.match(ref)
                    if m and m.group("type") == want:
                        out.append((val, t))
        elif op == "where_eq":
            out = [(v, t) for v, t in nodes if isinstance(v, dict) and v.get(st["field"]) == st["value"]]
        elif op == "extension":
            for val, _t in nodes:
                if isinstance(val, dict):
                    out.extend((e, "Extension") for e in val.get("extension", [])
                               if isinstance(e, dict) and e.get("url") == st["url"])
        elif op == "index":
            out = nodes[st["n"]:st["n"] + 1]
        nodes = out
    return nodes


def _extension_value(node: Node) -> Node:
    val, t = node
    if t == "Extension" and isinstance(val, dict):
        for k, v in val.items():
            if k.startswith("value") and k != "value":
                return v, k[5].lower() + k[6:]
    return node


_fhirpath_cache: dict[str, Any] = {}


def evaluate_fhirpath(expr: str, resource: dict[str, Any]) -> list[Node]:
    try:
        import fhirpathpy  # heavy import; only for the rare expressions we do not compile

        fn: Any = _fhirpath_cache.get(expr)
        if fn is None:
            fn = fhirpathpy.compile(expr)
            _fhirpath_cache[expr] = fn
        result = fn(resource)
    except Exception as exc:  # noqa: BLE001 - a bad custom expression must not break writes
        log.debug("fhirpath %r failed: %s", expr, exc)
        return []
    return [(v, None) for v in result if v is not None and not isinstance(v, bool) or v is True]


def evaluate_part(part: Part, resource: dict[str, Any]) -> list[Node]:
    if part.steps is not None:
        nodes = walk(part.steps, [(resource, part.resource)])
    elif part.fhirpath:
        nodes = evaluate_fhirpath(part.fhirpath, resource)
    else:
        return []
    return [_extension_value(n) for n in nodes]


# ---------------------------------------------------------------- per type conversion
def _strings_of(val: Any, t: str | None) -> Iterator[str]:
    if isinstance(val, str):
        yield val
    elif isinstance(val, dict):
        keys: tuple[str, ...]
        if t == "HumanName" or (t is None and ("family" in val or "given" in val)):
            keys = ("text", "family", "given", "prefix", "suffix")
        elif t == "Address" or (t is None and ("city" in val or "line" in val)):
            keys = ("text", "line", "city", "district", "state", "postalCode", "country")
        else:
            keys = tuple(k for k in val if k not in ("id", "extension", "url", "system", "use"))
        for k in keys:
            v = val.get(k)
            for x in (v if isinstance(v, list) else [v]):
                if isinstance(x, str):
                    yield x
                elif isinstance(x, dict) and t is None:
                    yield from _strings_of(x, None)


def tokens_of(val: Any, t: str | None) -> Iterator[tuple[str | None, str, str | None]]:
    """(system, code, display/text) triples of a token-typed value."""
    if isinstance(val, bool):
        yield None, "true" if val else "false", None
    elif isinstance(val, str | int):
        yield None, str(val), None
    elif isinstance(val, dict):
        if "coding" in val or t == "CodeableConcept":
            for c in val.get("coding", []) or []:
                if isinstance(c, dict) and c.get("code") is not None:
                    yield c.get("system"), str(c["code"]), c.get("display")
            if val.get("text") and not val.get("coding"):
                yield None, "", val["text"]
        elif t == "Identifier" or (t is None and "value" in val and "code" not in val):
            if val.get("value") is not None:
                yield val.get("system"), str(val["value"]), (val.get("type") or {}).get("text")
        elif t == "ContactPoint":
            if val.get("value") is not None:
                yield val.get("system"), str(val["value"]), None
        elif "code" in val:
            yield val.get("system"), str(val["code"]), val.get("display") or val.get("unit")
        elif "value" in val:
            yield val.get("system"), str(val["value"]), None


def _decimal(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None


def dates_of(val: Any, t: str | None) -> Iterator[tuple[int, int]]:
    if isinstance(val, str):
        r = date_range(val)
        if r:
            yield r
    elif isinstance(val, dict):
        if "start" in val or "end" in val or t == "Period":
            lo = date_range(val["start"]) if isinstance(val.get("start"), str) else None
            hi = date_range(val["end"]) if isinstance(val.get("end"), str) else None
            if lo or hi:
                yield (lo[0] if lo else MIN_US), (hi[1] if hi else MAX_US)
        elif "event" in val or "repeat" in val or t == "Timing":
            events = [date_range(e) for e in val.get("event", []) if isinstance(e, str)]
            ranges = [r for r in events if r]
            bounds = (val.get("repeat") or {}).get("boundsPeriod")
            if bounds:
                ranges.extend(dates_of(bounds, "Period"))
            if ranges:
                yield min(r[0] for r in ranges), max(r[1] for r in ranges)


def quantities_of(val: Any) -> Iterator[tuple[Decimal, str | None, str | None]]:
    if isinstance(val, dict):
        d = _decimal(val.get("value"))
        if d is not None:
            yield d, val.get("system"), val.get("code") or val.get("unit")


def reference_of(val: Any, t: str | None, base_url: str | None
                 ) -> tuple[str | None, str | None, str | None] | None:
    """(target type, target id, absolute url) of a Reference/canonical/uri value."""
    ref = val.get("reference") if isinstance(val, dict) else val if isinstance(val, str) else None
    if not isinstance(ref, str) or not ref or ref.startswith("#"):
        return None
    m = REF_RE.match(ref)
    if m and (not m.group("base") or (base_url and ref.startswith(base_url.rstrip("/") + "/"))):
        return m.group("type"), m.group("id"), None
    if m:
        return m.group("type"), m.group("id"), ref
    return None, None, ref


class Extractor:
    """Turns a resource into index rows using the registry's parameters for its type."""

    def __init__(self, registry: SearchParamRegistry, base_url: str | None = None) -> None:
        self.registry = registry
        self.base_url = base_url
        self.shared = SharedRows(registry)  # parameters whose rows others write (see shared_rows)
        self._plans: dict[str, tuple[int, list[tuple[SearchParam, list[Part], frozenset[str] | None]]]] = {}

    def plan(self, resource_type: str) -> list[tuple[SearchParam, list[Part], frozenset[str] | None]]:
        """Per type: each parameter, its parts, and the top-level keys one of which must be present."""
        cached = self._plans.get(resource_type)
        if cached and cached[0] == self.registry.version:
            return cached[1]
        plan = []
        for code, sp in sorted(self.registry.for_type(resource_type).items()):
            if code in SKIP_PARAMS or sp.type == "special":
                continue
            parts = self.shared.of(resource_type, sp).parts
            if parts:
                plan.append((sp, parts, _first_keys(parts)))
        self._plans[resource_type] = (self.registry.version, plan)
        return plan

    def extract(self, resource: dict[str, Any]) -> IndexRows:
        rt = resource["resourceType"]
        rows = IndexRows()
        keys = resource.keys()
        for sp, parts, first in self.plan(rt):
            if first is not None and first.isdisjoint(keys):
                continue
            ident = identity(rt, sp.code)
            nodes: list[Node] = []
            for part in parts:
                nodes.extend(evaluate_part(part, resource))
            if not nodes:
                continue
            self._add(rows, rt, sp, ident, nodes)
        text = resource.get("text", {}).get("div") if isinstance(resource.get("text"), dict) else None
        if isinstance(text, str):
            rows.text.append(re.sub(r"<[^>]+>", " ", text))
        _all_strings(resource, rows.content)
        return rows

    def _add(self, rows: IndexRows, rt: str, sp: SearchParam, ident: int, nodes: list[Node]) -> None:
        kind = sp.type
        if kind == "string":
            seen = set()
            for val, t in nodes:
                for s in _strings_of(val, t):
                    norm = normalize_string(s)[:STRING_MAX]
                    if (norm, s) not in seen:
                        seen.add((norm, s))
                        rows.string.append((ident, norm, s[:STRING_MAX]))
        elif kind == "token":
            text_ident = identity(rt, sp.code + ":text")
            type_ident = identity(rt, sp.code + ":of-type")
            texts: set[str] = set()  # a coding's display is often the concept's text too: one row each

            def add_text(s: str) -> None:
                if s not in texts:
                    texts.add(s)
                    rows.string.append((text_ident, normalize_string(s)[:STRING_MAX], s[:STRING_MAX]))

            for val, t in nodes:
                for system, code, display in tokens_of(val, t):
                    if code != "":
                        rows.token.append(token_row(ident, system, code))
                    if display:
                        add_text(display)
                if t == "Identifier" and isinstance(val, dict) and val.get("value") is not None:
                    for c in (val.get("type") or {}).get("coding", []) or []:
                        key = f"{c.get('system', '')}|{c.get('code', '')}|{val['value']}"
                        rows.token.append((type_ident, h64(str(type_ident), key), h64(str(type_ident), key),
                                           None, key[:STRING_MAX]))
                if isinstance(val, dict) and isinstance(val.get("text"), str) and val.get("coding"):
                    add_text(val["text"])
        elif kind == "reference":
            id_ident = identity(rt, sp.code + ":identifier")
            for val, t in nodes:
                ref = reference_of(val, t, self.base_url)
                if ref:
                    rows.reference.append((ident, *ref))
                ident_val = val.get("identifier") if isinstance(val, dict) else None
                if isinstance(ident_val, dict) and ident_val.get("value") is not None:
                    rows.token.append(token_row(id_ident, ident_val.get("system"), str(ident_val["value"])))
        elif kind == "date":
            for val, t in nodes:
                for lo, hi in dates_of(val, t):
                    rows.date.append((ident, lo, hi))
        elif kind == "number":
            for val, _t in nodes:
                d = _decimal(val)
                if d is not None:
                    rows.number.append((ident, float(d)))
        elif kind == "quantity":
            for val, _t in nodes:
                for d, system, unit in quantities_of(val):
                    canon = ucum_canonical(d, unit)
                    rows.quantity.append((ident, float(d), h64(system or "", unit or "") if unit else None,
                                          h64(unit) if unit else None,
                                          float(canon[0]) if canon else None, canon[1] if canon else None))
        elif kind == "uri":
            for val, _t in nodes:
                if isinstance(val, str):
                    rows.uri.append((ident, val[:500]))
        elif kind == "composite":
            self._add_composite(rows, sp, ident, nodes)

    def _add_composite(self, rows: IndexRows, sp: SearchParam, ident: int, nodes: list[Node]) -> None:
        if len(sp.components) != 2 or any(c.steps is None or c.param is None for c in sp.components):
            return
        c1, c2 = sp.components
        assert c1.param is not None and c2.param is not None and c1.steps is not None and c2.steps is not None
        for node in nodes:
            first = walk(c1.steps, [node])
            second = walk(c2.steps, [node])
            keys1 = [(h64(str(ident), s or "", c), h64(str(ident), c))
                     for v, t in first for s, c, _d in tokens_of(v, t)]
            for v, t in second:
                for k_sv, k_v in keys1:
                    if c2.param.type == "token":
                        for s, c, _d in tokens_of(v, t):
                            rows.composite.append((ident, k_sv, k_v, h64(str(ident), s or "", c),
                                                   h64(str(ident), c), None, None, None, None))
                    elif c2.param.type == "quantity":
                        for d, system, code in quantities_of(v):
                            rows.composite.append((ident, k_sv, k_v, None, h64(code) if code else None,
                                                   float(d), h64(system or "", code or "") if code else None,
                                                   None, None))
                            canon = ucum_canonical(d, code)
                            if canon:  # a second row in UCUM canonical units (marked in c2_sys_value)
                                rows.composite.append((ident, k_sv, k_v, CANONICAL_MARK, h64("canon", canon[1]),
                                                       float(canon[0]), None, None, None))
                    elif c2.param.type == "date":
                        for lo, hi in dates_of(v, t):
                            rows.composite.append((ident, k_sv, k_v, None, None, None, None, lo, hi))
                    elif c2.param.type == "string":
                        for s in _strings_of(v, t):
                            rows.composite.append((ident, k_sv, k_v, h64(normalize_string(s)), None,
                                                   None, None, None, None))


def _first_keys(parts: list[Part]) -> frozenset[str] | None:
    keys: set[str] = set()
    for part in parts:
        if part.steps is None or not part.steps or part.steps[0]["op"] != "field":
            return None
        keys.update(c["key"] for c in part.steps[0]["cands"])
    return frozenset(keys)


_NOT_CONTENT = frozenset({"div", "reference", "system", "url", "id", "resourceType", "meta", "fullUrl"})


def _all_strings(node: Any, out: list[str], depth: int = 0) -> None:
    """The strings ``_content`` searches (no dates, ids, systems or references), appended to ``out``.

    A plain recursive function: as a generator (``yield from`` at every level) it cost a fifth of extraction."""
    if depth > 12:
        return
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in _NOT_CONTENT:
                if isinstance(v, str):
                    if depth < 12 and not v[:4].isdigit() and len(v) < 2000:
                        out.append(v)
                else:
                    _all_strings(v, out, depth + 1)
    elif isinstance(node, list):
        for v in node:
            if isinstance(v, str):
                if depth < 12 and not v[:4].isdigit() and len(v) < 2000:
                    out.append(v)
            else:
                _all_strings(v, out, depth + 1)
    elif isinstance(node, str) and not node[:4].isdigit() and len(node) < 2000:
        out.append(node)
