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
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tests.integration.search.evalpath import (
    REF,
    JsonDict,
    date_bounds,
    date_match,
    dates,
    dec,
    evaluate,
    norm,
    num_match,
    prefixed,
    split,
    split_union,
    strings,
    token_texts,
    tokens,
    unesc,
)

# UCUM units the evaluator understands, written independently: unit -> (dimension, factor to base)
UNITS: dict[str, tuple[str, Decimal]] = {
    "kg": ("mass", Decimal(1000)), "g": ("mass", Decimal(1)), "mg": ("mass", Decimal("0.001")),
    "ug": ("mass", Decimal("0.000001")), "ng": ("mass", Decimal("1e-9")), "pg": ("mass", Decimal("1e-12")),
    "[lb_av]": ("mass", Decimal("453.59237")), "L": ("vol", Decimal(1)), "dL": ("vol", Decimal("0.1")),
    "mL": ("vol", Decimal("0.001")), "m": ("len", Decimal(1)), "cm": ("len", Decimal("0.01")),
    "mm": ("len", Decimal("0.001")), "g/L": ("mass/vol", Decimal(1)), "g/dL": ("mass/vol", Decimal(10)),
    "mg/dL": ("mass/vol", Decimal("0.01")), "mg/L": ("mass/vol", Decimal("0.001")),
}


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
