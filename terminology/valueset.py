"""ValueSet semantics: evaluating ``compose`` for ``$expand`` and, without expanding,
for membership tests (``$validate-code``, required bindings, search ``:in``).

Membership never materialises a large expansion: an ``is-a`` include over SNOMED CT
is answered by one closure-table probe, so validating against a value set with
hundreds of thousands of members costs the same as against a small one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from terminology.errors import TerminologyError, TooCostly, UnknownCodeSystem, UnknownValueSet
from terminology.index import LRU, CodeSystemInfo, Concept, TerminologyIndex

JsonDict = dict[str, Any]
MAX_EXPANSION = 250_000
_HIERARCHY_OPS = ("is-a", "descendent-of", "is-not-a", "generalizes")
IMPLICIT_SUFFIX = "?fhir_vs"


@dataclass(frozen=True)
class Item:
    system: str
    version: str | None
    code: str
    display: str | None
    abstract: bool = False
    inactive: bool = False
    cs_id: int | None = None
    seq: int | None = None
    explicit: bool = False  # enumerated in compose.include.concept (kept even if abstract/inactive)

    @property
    def key(self) -> tuple[str, str]:
        return (self.system, self.code)


def _item(c: Concept) -> Item:
    return Item(c.cs.url, c.cs.version or None, c.code, c.display, c.abstract, c.inactive, c.cs.id, c.seq)


class ValueSetEngine:
    def __init__(self, index: TerminologyIndex) -> None:
        self.index = index
        self._expansions = LRU(512)
        self._members = LRU(100_000)
        self._filter_sets = LRU(1024)
        self._unknown = LRU(4096)  # URLs that resolved to nothing: validation asks again for every write

    def invalidate(self) -> None:
        self._unknown.clear()
        self._expansions.clear()
        self._members.clear()
        self._filter_sets.clear()

    # -- resolution -------------------------------------------------------------------
    def resolve(self, url_or_vs: str | JsonDict) -> JsonDict:
        """A stored ValueSet, an implicit one (CodeSystem.valueSet, ``?fhir_vs``), or the dict given."""
        if isinstance(url_or_vs, dict):
            if url_or_vs.get("resourceType", "ValueSet") != "ValueSet":
                raise TerminologyError("The valueSet parameter must be a ValueSet resource")
            return url_or_vs
        url = url_or_vs
        if self._unknown.get(url, None) is not None:
            raise UnknownValueSet(f"Value set {url} is not known to this server")
        vs = self.index.value_set(url)
        if vs is not None:
            return vs
        base = url.split("|", 1)[0]
        if IMPLICIT_SUFFIX in base:
            return self._implicit_snomed_style(base)
        cs = self.index.code_system_by_value_set(base)
        if cs is not None:
            return {"resourceType": "ValueSet", "url": base, "status": "active",
                    "compose": {"include": [{"system": cs.url}]}}
        self._unknown.put(url, True)
        raise UnknownValueSet(f"Value set {url} is not known to this server")

    def _implicit_snomed_style(self, url: str) -> JsonDict:
        """``<system>?fhir_vs`` (all codes) and ``<system>?fhir_vs=isa/<code>`` implicit value sets."""
        system, _, arg = url.partition(IMPLICIT_SUFFIX)
        inc: JsonDict = {"system": system}
        if arg.startswith("=isa/"):
            inc["filter"] = [{"property": "concept", "op": "is-a", "value": arg[5:]}]
        elif arg:
            raise UnknownValueSet(f"Unsupported implicit value set {url}")
        return {"resourceType": "ValueSet", "url": url, "status": "active", "compose": {"include": [inc]}}

    @staticmethod
    def _cache_key(vs: JsonDict) -> str | None:
        if vs.get("url") and ("id" in vs or IMPLICIT_SUFFIX in vs["url"] or "compose" in vs):
            return json.dumps([vs.get("url"), vs.get("version"), vs.get("meta", {}).get("versionId"),
                               hash(json.dumps(vs.get("compose"), sort_keys=True))])
        return None

    # -- expansion --------------------------------------------------------------------------
    def expand_items(self, vs: JsonDict, stack: tuple[str, ...] = ()) -> list[Item]:
        key = self._cache_key(vs)
        if key is not None:
            hit = self._expansions.get(key)
            if hit is not None:
                return hit  # type: ignore[no-any-return]
        url = vs.get("url") or ""
        if url and url in stack:
            raise TerminologyError(f"Value set {url} includes itself", code="processing")
        stack = (*stack, url)
        compose = vs.get("compose")
        if compose is None:
            if "expansion" in vs:
                return list(_flatten(vs["expansion"].get("contains", [])))
            raise TerminologyError(f"Value set {url} has neither compose nor expansion", 422, "processing")
        items: dict[tuple[str, str], Item] = {}
        for inc in compose.get("include", []):
            for it in self._include_items(inc, stack):
                items.setdefault(it.key, it)
                if len(items) > MAX_EXPANSION:
                    raise TooCostly(f"Expansion of {url} exceeds {MAX_EXPANSION} codes")
        for exc in compose.get("exclude", []):
            for it in self._include_items(exc, stack):
                items.pop(it.key, None)
        out = list(items.values())
        if compose.get("inactive") is False:
            out = [i for i in out if not i.inactive]
        if key is not None:
            self._expansions.put(key, out)
        return out

    def _include_items(self, inc: JsonDict, stack: tuple[str, ...]) -> list[Item]:
        system = inc.get("system")
        vs_keys: list[set[tuple[str, str]]] = []
        vs_items: list[Item] = []
        for i, u in enumerate(inc.get("valueSet", [])):
            its = self.expand_items(self.resolve(u), stack)
            if i == 0:
                vs_items = its
            vs_keys.append({x.key for x in its})
        if system is None:
            if not vs_keys:
                return []
            return [x for x in vs_items if all(x.key in k for k in vs_keys[1:])]
        cs = self.index.code_system(system, inc.get("version"))
        items: list[Item]
        if inc.get("concept"):
            items = []
            for c in inc["concept"]:
                code = c.get("code")
                if not code:
                    continue
                found = self.index.concept(cs, code) if cs is not None else None
                if found is not None:
                    items.append(Item(found.cs.url, found.cs.version or None, found.code,
                                      found.display or c.get("display"), found.abstract, found.inactive,
                                      found.cs.id, found.seq, explicit=True))
                elif cs is None or not cs.enumerable:
                    items.append(Item(system, inc.get("version"), code, c.get("display"), explicit=True))
        else:
            if cs is None or cs.content == "not-present":
                raise UnknownCodeSystem(system, inc.get("version"))
            single = inc.get("filter", [])
            root = self.index.concept(cs, str(single[0].get("value", ""))) if len(single) == 1 and \
                single[0].get("op") in ("is-a", "descendent-of") else None
            if root is not None:
                below = self.index.descendant_concepts(cs, root.seq)
                if single[0]["op"] == "is-a":
                    below = sorted([root, *below], key=lambda c: c.seq)
                items = [_item(c) for c in below]
            elif inc.get("filter"):
                seqs: set[int] | None = None
                for f in inc["filter"]:
                    s = self.filter_seqs(cs, f)
                    seqs = s if seqs is None else seqs & s
                items = [_item(c) for c in self.index.concepts(cs, seqs or set())]
            else:
                if cs.concept_count > MAX_EXPANSION:
                    raise TooCostly(f"Code system {system} has {cs.concept_count} codes; "
                                    "too many to expand in full")
                items = [_item(c) for c in self.index.concepts(cs)]
        if vs_keys:
            items = [x for x in items if all(x.key in k for k in vs_keys)]
        return items

    # -- filters --------------------------------------------------------------------------
    def filter_seqs(self, cs: CodeSystemInfo, f: JsonDict) -> set[int]:
        key = (cs.id, f.get("property"), f.get("op"), f.get("value"))
        hit = self._filter_sets.get(key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        out = self._filter_seqs(cs, str(f.get("property", "")), str(f.get("op", "")), str(f.get("value", "")))
        self._filter_sets.put(key, out)
        return out

    def _filter_seqs(self, cs: CodeSystemInfo, prop: str, op: str, value: str) -> set[int]:
        ix = self.index
        if op in _HIERARCHY_OPS:
            c = ix.concept(cs, value)
            if c is None:
                return ix.all_seqs(cs) if op == "is-not-a" else set()
            if op == "is-a":
                return ix.descendants(cs, c.seq) | {c.seq}
            if op == "descendent-of":
                return ix.descendants(cs, c.seq)
            if op == "generalizes":
                return ix.ancestors(cs, c.seq) | {c.seq}
            return ix.all_seqs(cs) - ix.descendants(cs, c.seq) - {c.seq}
        if op == "regex":
            try:
                pat = re.compile(value)
            except re.error as e:
                raise TerminologyError(f"Invalid regex filter {value!r}: {e}") from e
            if prop in ("code", "concept"):
                return {c.seq for c in ix.concepts(cs) if pat.fullmatch(c.code)}
            if prop == "display":
                return {c.seq for c in ix.concepts(cs) if c.display and pat.fullmatch(c.display)}
            return {s for s, v in ix.property_values(cs, prop) if pat.fullmatch(v)}
        if op in ("=", "in", "not-in"):
            values = [value] if op == "=" else [v.strip() for v in value.split(",") if v.strip()]
            s = self._values_seqs(cs, prop, values)
            return ix.all_seqs(cs) - s if op == "not-in" else s
        if op == "exists":
            has = ix.property_seqs(cs, prop, None)
            if prop in ("parent", "child"):
                has |= self._relation_exists(cs, prop)
            return has if value.lower() != "false" else ix.all_seqs(cs) - has
        raise TerminologyError(f"Unsupported ValueSet filter operator {op!r}", 422, "not-supported")

    def _values_seqs(self, cs: CodeSystemInfo, prop: str, values: list[str]) -> set[int]:
        ix = self.index
        if prop in ("code", "concept"):
            return set(ix.seqs_for_codes(cs, values).values())
        if prop == "display":
            wanted = set(values)
            return {c.seq for c in ix.concepts(cs) if c.display in wanted}
        if prop in ("parent", "child"):
            out: set[int] = set()
            for seq in ix.seqs_for_codes(cs, values).values():
                out |= ix.children_seqs(cs, seq) if prop == "parent" else ix.parent_seqs(cs, seq)
            return out | ix.property_seqs(cs, prop, values)
        return ix.property_seqs(cs, prop, values)

    def _relation_exists(self, cs: CodeSystemInfo, prop: str) -> set[int]:
        """Concepts that have a parent (``parent`` exists) or a child (``child`` exists)."""
        return self.index.related_seqs(cs, has_parent=prop == "parent")

    # -- membership -------------------------------------------------------------------------
    def contains(self, vs: JsonDict, system: str, code: str, version: str | None = None,
                 stack: tuple[str, ...] = ()) -> bool | None:
        """True/False, or None when the answer depends on a code system this server lacks."""
        key = self._cache_key(vs)
        mkey = (key, system, code, version) if key is not None else None
        if mkey is not None:
            hit = self._members.get(mkey, "?")
            if hit != "?":
                return hit  # type: ignore[no-any-return]
        result = self._contains(vs, system, code, version, stack)
        if mkey is not None:
            self._members.put(mkey, result)
        return result

    def _contains(self, vs: JsonDict, system: str, code: str, version: str | None,
                  stack: tuple[str, ...]) -> bool | None:
        url = vs.get("url") or ""
        if url and url in stack:
            raise TerminologyError(f"Value set {url} includes itself", code="processing")
        stack = (*stack, url)
        compose = vs.get("compose")
        if compose is None:
            if "expansion" in vs:
                return any(i.system == system and i.code == code
                           for i in _flatten(vs["expansion"].get("contains", [])))
            return None
        unknown = False
        matched = False
        for inc in compose.get("include", []):
            r = self._include_has(inc, system, code, version, stack)
            if r is True:
                matched = True
                break
            if r is None:
                unknown = True
        if not matched:
            return None if unknown else False
        for exc in compose.get("exclude", []):
            r = self._include_has(exc, system, code, version, stack)
            if r is True:
                return False
            if r is None:
                return None
        if compose.get("inactive") is False:
            cs = self.index.code_system(system)
            c = self.index.concept(cs, code) if cs else None
            if c is not None and c.inactive:
                return False
        return True

    def _include_has(self, inc: JsonDict, system: str, code: str, version: str | None,
                     stack: tuple[str, ...]) -> bool | None:
        unknown = False
        for u in inc.get("valueSet", []):
            r = self.contains(self.resolve(u), system, code, version, stack)
            if r is False:
                return False
            if r is None:
                unknown = True
        inc_system = inc.get("system")
        if inc_system is None:
            return None if unknown else bool(inc.get("valueSet"))
        if inc_system != system:
            return False
        if inc.get("version") and version and inc["version"] != version:
            return False
        cs = self.index.code_system(system, inc.get("version"))
        if inc.get("concept"):
            codes = [c.get("code") for c in inc["concept"]]
            if cs is not None and not cs.case_sensitive:
                hit = code.lower() in {c.lower() for c in codes if c}
            else:
                hit = code in codes
            return (None if unknown else True) if hit else False
        if cs is None or cs.content == "not-present":
            return None
        c = self.index.concept(cs, code)
        if c is None:
            return False if cs.enumerable else None
        for f in inc.get("filter", []):
            if not self._filter_has(cs, c, f):
                return False
        return None if unknown else True

    def _filter_has(self, cs: CodeSystemInfo, c: Concept, f: JsonDict) -> bool:
        op = f.get("op")
        value = str(f.get("value", ""))
        if op in _HIERARCHY_OPS:
            target = self.index.concept(cs, value)
            if target is None:
                return op == "is-not-a"
            if op == "is-a":
                return c.seq == target.seq or self.index.is_descendant(cs, target.seq, c.seq)
            if op == "descendent-of":
                return self.index.is_descendant(cs, target.seq, c.seq)
            if op == "generalizes":
                return c.seq == target.seq or self.index.is_descendant(cs, c.seq, target.seq)
            return not (c.seq == target.seq or self.index.is_descendant(cs, target.seq, c.seq))
        return c.seq in self.filter_seqs(cs, f)


def _flatten(contains: Iterable[JsonDict]) -> Iterable[Item]:
    for c in contains:
        if c.get("code") and c.get("system"):
            yield Item(c["system"], c.get("version"), c["code"], c.get("display"),
                       bool(c.get("abstract")), bool(c.get("inactive")))
        yield from _flatten(c.get("contains", []))
