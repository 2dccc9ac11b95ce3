"""Query parameters -> ``SearchQuery``, validated against the registry.

Unknown or malformed parameters are 400s unless the client asked for
``Prefer: handling=lenient``; then they are dropped and reported back so the
self link shows what was really applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.errors import Issue, OperationOutcomeError, bad_request
from fhir_server.search.query import Criterion, Include, SearchQuery, SortKey
from fhir_server.search.registry import (
    RESULT_PARAMS,
    SearchParam,
    SearchParamRegistry,
    compartment_definitions,
)
from fhir_server.search.values import (
    date_range,
    escape_split,
    number_range,
    split_unescaped_keep,
    unescape,
)

DEFAULT_COUNT = 20
MAX_COUNT = 1000
# Reference hops in one parameter (chain links and nested _has together). Each hop is one nested subquery;
# SQLite's parser gives up at four of them with a string or token at the end ("parser stack overflow").
MAX_LINKS = 3
# Target types one parameter's chain may fan out to over all its hops when no :Type names them. A reference
# to Any (Provenance.target) fans out to 145 types; target.subject to 993 (~0.5 s on SQLite);
# target.subject.subject to 5,241 (5-25 s).
MAX_BRANCHES = 1000
KNOWN_MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"text", "not", "of-type", "missing", "in", "not-in", "below", "above"},
    "reference": {"missing", "identifier"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
}


class Terminology(Protocol):
    def expand(self, url: str, **kwargs: Any) -> dict[str, Any]: ...

    def codes_below(self, system: str, code: str) -> set[str]: ...

    def codes_above(self, system: str, code: str) -> set[str]: ...

    def knows_code(self, system: str, code: str) -> bool: ...


class ChainTooBroad(OperationOutcomeError):
    """A chain past MAX_LINKS / MAX_BRANCHES: a 400 that no other target type of the chain can avoid."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, [Issue("error", "too-costly", msg)])


@dataclass
class _Hops:
    """How far one search parameter's chain / _has has gone: its depth on this path, its branches in all."""

    name: str  # the parameter as the client wrote it
    depth: int = 0
    branches: list[int] = field(default_factory=lambda: [0])

    def next(self, branches: int) -> _Hops:
        name = self.name
        if self.depth >= MAX_LINKS:
            raise ChainTooBroad(f"{name}: chains and _has are limited to {MAX_LINKS} references in one parameter")
        self.branches[0] += branches
        if self.branches[0] > MAX_BRANCHES:
            raise ChainTooBroad(f"{name}: this chain reaches more than {MAX_BRANCHES} resource types; name the "
                                "target type of each reference (reference:Type.parameter)")
        return _Hops(name, self.depth + 1, self.branches)


@dataclass
class ParsedSearch:
    query: SearchQuery
    applied: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # for the searchset's OperationOutcome entry
    summary: str | None = None
    elements: list[str] | None = None


class SearchParser:
    def __init__(self, registry: SearchParamRegistry, terminology: Any = None) -> None:
        self.registry = registry
        self.terminology = terminology

    def parse(self, resource_types: list[str] | None, params: list[tuple[str, str]], *,
              lenient: bool = False) -> ParsedSearch:
        q = SearchQuery(resource_types=resource_types, count=DEFAULT_COUNT)
        out = ParsedSearch(q)
        # _type first: the criteria of a system search are parsed against the types it names
        params = sorted(params, key=lambda kv: kv[0] != "_type") if resource_types is None else params
        for name, value in params:
            if "\x00" in name or "\x00" in value:  # no index holds one, and PostgreSQL refuses it in SQL
                raise bad_request(f"Search parameter {name!r} contains a NUL character")
            try:
                applied = self._one(q, out, resource_types, name, value)
            except Exception as exc:
                if lenient and getattr(exc, "status", None) == 400:
                    out.ignored.append((name, value))
                    continue
                raise
            if applied:
                out.applied.append((name, value))
        out.warnings.extend(self._hierarchy_warnings(q.criteria))
        return out

    def _hierarchy_warnings(self, criteria: list[Criterion]) -> list[str]:
        """``:below``/``:above`` on a code this server has no hierarchy for matches that code alone: say so,
        instead of a silent short result (SNOMED CT and LOINC are imported, not shipped)."""
        out: list[str] = []
        knows = getattr(self.terminology, "knows_code", None)
        todo = list(criteria)
        while todo and knows is not None:
            c = todo.pop()
            todo.extend(c.subs)
            if c.sub is not None:
                todo.append(c.sub)
            if c.kind != "param" or c.modifier not in ("below", "above") or c.param is None \
                    or c.param.type != "token":
                continue
            for v in c.values:
                parts = escape_split(v, "|")
                if len(parts) == 2 and not knows(parts[0], parts[1]):
                    out.append(f"{c.param.code}:{c.modifier}={v}: code {parts[1]!r} is not in any code system "
                               f"loaded here ({parts[0]}), so only that code itself matched; a code system "
                               "such as SNOMED CT or LOINC has to be imported first (digitalfront terminology)")
        return out

    # ------------------------------------------------------------------
    def _one(self, q: SearchQuery, out: ParsedSearch, types: list[str] | None, name: str, value: str) -> bool:
        base = name.split(":", 1)[0]
        if name in ("_format", "_pretty"):
            return False
        if base == "_type":
            wanted = [t for v in value.split(",") for t in [v.strip()] if t]
            unknown = [t for t in wanted if t not in self.registry.resource_types]
            if unknown:
                raise bad_request(f"Unknown resource type(s) in _type: {', '.join(unknown)}")
            q.resource_types = sorted(set(wanted) & set(q.resource_types or wanted))
            return True
        if base in RESULT_PARAMS or base in ("_summary", "_elements"):
            self._result_param(q, out, types, name, value)
            return True
        types = types if types is not None else q.resource_types
        if base == "_has":
            rt = self._single_type(types, name)
            q.criteria.append(self._has(rt, name, value))
            return True
        rt_list = types or sorted(self.registry.resource_types)
        if types is None or len(types) > 1:
            # system level / _type search: only parameters common to all types
            crits = [self._criterion(rt, name, value) for rt in rt_list]
            q.criteria.append(Criterion("or", rt_list[0], subs=[c for c in crits if c is not None]))
            return True
        crit = self._criterion(types[0], name, value)
        if crit is not None:
            q.criteria.append(crit)
        return True

    def _single_type(self, types: list[str] | None, name: str) -> str:
        if not types or len(types) != 1:
            raise bad_request(f"{name} needs a single resource type")
        return types[0]

    def _criterion(self, rt: str, name: str, value: str, hops: _Hops | None = None) -> Criterion:
        # chained parameter: ref[:Type].rest
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        if code == "_id":
            if modifier not in ("", "not"):
                raise bad_request(f"Modifier :{modifier} is not valid on _id")
            return Criterion("id", rt, modifier=modifier or None, values=[value])
        if code == "_lastUpdated":
            if modifier:
                raise bad_request("_lastUpdated takes no modifier")
            return Criterion("lastUpdated", rt, values=escape_split(value, ","))
        if code in ("_text", "_content"):
            if modifier:
                raise bad_request(f"{code} takes no modifier")
            return Criterion(code[1:], rt, values=[unescape(v) for v in split_unescaped_keep(value, ",")])
        if code == "_list":
            return Criterion("list", rt, values=escape_split(value, ","))
        if code in ("_query", "_filter"):
            raise bad_request(f"{code} is not supported by this server", code="not-supported")
        sp = self.registry.get(rt, code)
        if sp is None:
            raise bad_request(f"Unknown search parameter {code!r} for {rt}", code="not-supported")
        if sp.type == "special" or (not sp.parts and sp.type != "composite"):
            raise bad_request(f"Search parameter {code} ({sp.type}, no indexable expression) is not supported",
                              code="not-supported")
        if dot:
            if sp.type != "reference":
                raise bad_request(f"Cannot chain through non-reference parameter {code}")
            targets = [modifier] if modifier else [t for t in sp.target if t in self.registry.resource_types]
            if modifier and modifier not in self.registry.resource_types:
                raise bad_request(f"Unknown resource type {modifier} in chain")
            hops = (hops or _Hops(name)).next(len(targets))
            subs = []
            for t in targets:
                try:
                    sub = self._criterion(t, rest, value, hops)
                except ChainTooBroad:
                    raise
                except Exception as exc:  # parameter unknown on this target type: try the others
                    if getattr(exc, "status", None) == 400 and len(targets) > 1:
                        continue
                    raise
                subs.append(Criterion("chain", rt, param=sp, target_type=t, sub=sub))
            if not subs:
                raise bad_request(f"Chained parameter {rest!r} is not valid on any target of {code}")
            return subs[0] if len(subs) == 1 else Criterion("or", rt, subs=subs)
        if modifier:
            if modifier not in KNOWN_MODIFIERS.get(sp.type, set()) and not (
                    sp.type == "reference" and modifier in self.registry.resource_types):
                raise bad_request(f"Modifier :{modifier} is not valid on {sp.type} parameter {code}")
        if modifier == "missing" and value not in ("true", "false"):
            raise bad_request(":missing takes true or false")
        values = split_unescaped_keep(value, ",")
        if any(v == "" for v in values) and modifier != "missing":
            raise bad_request(f"Empty value for search parameter {code}")
        if modifier != "missing":
            for v in values:
                _check_value(sp, modifier, v)
        crit = Criterion("param", rt, param=sp, modifier=modifier or None, values=values)
        if modifier in ("in", "not-in", "below", "above") and sp.type == "token":
            crit.value_set_codes = self._expand(modifier, values)
        return crit

    def _expand(self, modifier: str, values: list[str]) -> list[tuple[str | None, str]]:
        ts = self.terminology
        if ts is None:
            raise bad_request(f":{modifier} needs the terminology service, which is not configured")
        out: list[tuple[str | None, str]] = []
        for v in values:
            if modifier in ("in", "not-in"):
                try:
                    expansion = ts.expand(v)
                except Exception as exc:  # unknown value set, or one needing an absent code system
                    raise bad_request(f"Value set {v!r} cannot be expanded: {exc}") from exc
                out.extend((c.get("system"), c["code"]) for c in _contains(expansion) if c.get("code"))
            else:
                parts = escape_split(v, "|")
                if len(parts) != 2:
                    raise bad_request(f":{modifier} needs system|code")
                fn = ts.codes_below if modifier == "below" else ts.codes_above
                out.extend((parts[0], c) for c in fn(parts[0], parts[1]) | {parts[1]})
        return out

    def _has(self, rt: str, name: str, value: str, hops: _Hops | None = None) -> Criterion:
        # _has:Type:refParam:param (param may itself be _has:...)
        hops = (hops or _Hops(name)).next(1)
        parts = name.split(":", 3)
        if len(parts) < 4:
            raise bad_request("_has must be _has:Type:reference:parameter")
        _, ttype, refp, rest = parts
        if ttype not in self.registry.resource_types:
            raise bad_request(f"Unknown resource type {ttype} in _has")
        ref = self.registry.get(ttype, refp)
        if ref is None or ref.type != "reference":
            raise bad_request(f"{refp} is not a reference parameter of {ttype}")
        sub = (self._has(ttype, rest, value, hops) if rest.startswith("_has:")
               else self._criterion(ttype, rest, value, hops))
        return Criterion("has", rt, param=ref, target_type=ttype, sub=sub)

    def _result_param(self, q: SearchQuery, out: ParsedSearch, types: list[str] | None, name: str,
                      value: str) -> None:
        base, _, modifier = name.partition(":")
        if base == "_count":
            try:
                n = int(value)
            except ValueError as exc:
                raise bad_request("_count must be an integer") from exc
            if n < 0:
                raise bad_request("_count must not be negative")
            q.count = min(n, MAX_COUNT)
        elif base == "_offset":
            try:
                q.offset = max(0, int(value))
            except ValueError as exc:
                raise bad_request("_offset must be an integer") from exc
        elif base == "_cursor":
            q.cursor = value
        elif base == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise bad_request("_total must be none, estimate or accurate")
            q.total = value
        elif base == "_summary":
            if value not in ("true", "false", "text", "data", "count"):
                raise bad_request("_summary must be true, text, data, count or false")
            out.summary = value
            q.summary_count = value == "count"
        elif base == "_elements":
            out.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif base == "_sort":
            q.sort = [self._sort_key(types, k.strip()) for k in value.split(",") if k.strip()]
        elif base in ("_include", "_revinclude"):
            q.includes.append(self._include(value, reverse=base == "_revinclude",
                                            iterate=modifier in ("iterate", "recurse")))
        elif base in ("_contained", "_containedType", "_since", "_at"):
            raise bad_request(f"{base} is not supported in search")

    def _sort_key(self, types: list[str] | None, key: str) -> SortKey:
        desc = key.startswith("-")
        code = key.lstrip("-")
        if code in ("_id", "_lastUpdated"):
            return SortKey(None, code, desc)
        for rt in types or []:
            sp = self.registry.get(rt, code)
            if sp is not None:
                if sp.type in ("composite", "special"):
                    raise bad_request(f"Cannot sort by {sp.type} parameter {code}")
                return SortKey(sp, code, desc)
        raise bad_request(f"Unknown sort parameter {code!r}")

    def _include(self, value: str, reverse: bool, iterate: bool) -> Include:
        parts = value.split(":")
        if value == "*":
            return Include("*", "*", None, iterate, reverse)
        if len(parts) < 2 or len(parts) > 3:
            raise bad_request(f"Malformed include {value!r}: use Type:param[:TargetType]")
        src, param = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if src != "*" and src not in self.registry.resource_types:
            raise bad_request(f"Unknown resource type {src} in include")
        if param != "*":
            sp = self.registry.get(src, param)
            if sp is None or sp.type != "reference":
                raise bad_request(f"{param} is not a reference parameter of {src}")
        if target and target not in self.registry.resource_types:
            raise bad_request(f"Unknown target type {target} in include")
        return Include(src, param, target, iterate, reverse)


PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def _number_part(text: str) -> str:
    if len(text) > 2 and text[:2] in PREFIXES:
        return text[2:]
    return text


def _check_value(sp: SearchParam, modifier: str, raw: str) -> None:
    """Malformed values are 400s here, in the parser, so that handling=lenient can drop them."""
    kind = sp.type
    if kind == "date" and date_range(_number_part(unescape(raw))) is None:
        raise bad_request(f"Invalid date {raw!r} for {sp.code}")
    if kind == "number" and number_range(_number_part(unescape(raw))) is None:
        raise bad_request(f"Invalid number {raw!r} for {sp.code}")
    if kind == "quantity":
        parts = escape_split(raw, "|")
        if len(parts) not in (1, 3) or number_range(_number_part(parts[0])) is None:
            raise bad_request(f"Malformed quantity {raw!r} for {sp.code}: use [prefix]value[|system|code]")
    if kind == "token" and modifier in ("", "not") and len(escape_split(raw, "|")) > 2:
        raise bad_request(f"Malformed token {raw!r} for {sp.code}: use [system|]code")
    if kind == "token" and modifier == "of-type" and len(escape_split(raw, "|")) != 3:
        raise bad_request(f":of-type on {sp.code} needs system|code|value")
    if kind == "composite" and len(split_unescaped_keep(raw, "$")) != len(sp.components):
        raise bad_request(f"Composite value {raw!r} for {sp.code} needs {len(sp.components)} parts joined by '$'")


def _contains(expansion: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list((expansion.get("expansion") or {}).get("contains", []))
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(c.get("contains", []))
    return out


def compartment_criterion(registry: SearchParamRegistry, compartment: str, id: str,
                          resource_type: str) -> Criterion | None:
    """Membership of ``resource_type`` in ``compartment/id`` per the CompartmentDefinition; None if never."""
    defs = compartment_definitions().get(compartment)
    if defs is None:
        raise bad_request(f"{compartment} is not a compartment")
    codes = defs.get(resource_type, [])
    params: list[SearchParam] = []
    for code in codes:
        if code == "{def}":
            continue
        sp = registry.get(resource_type, code)
        if sp is not None and sp.type == "reference":
            params.append(sp)
    if not params and resource_type != compartment:
        return None
    return Criterion("compartment", resource_type, params=params, values=[f"{compartment}/{id}"])
