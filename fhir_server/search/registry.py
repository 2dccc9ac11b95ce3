"""The search-parameter registry: every base R4 SearchParameter plus custom ones.

Base parameters come from the shipped extract of ``hl7.fhir.r4.examples``
(scripts/build_search_data.py); custom SearchParameter resources created
through the API are added with ``register``. Parameters are looked up per
resource type by code; ``Resource``/``DomainResource`` parameters apply to all.
"""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fhir_server.search.compile import compile_part, element_types

DATA = Path(__file__).with_name("data")

# Parameters every server answers that are not (only) SearchParameter resources.
RESULT_PARAMS = frozenset({
    "_sort", "_count", "_include", "_revinclude", "_summary", "_total", "_elements", "_contained",
    "_containedType", "_format", "_pretty", "_offset", "_cursor", "_since", "_at",
})
SPECIAL_PARAMS = frozenset({"_has", "_type", "_list", "_text", "_content", "_query", "_filter"})


@dataclass
class Part:
    """One ``|`` branch of an expression, for one resource type."""

    resource: str | None
    steps: list[dict[str, Any]] | None = None
    types: list[str] = field(default_factory=list)
    fhirpath: str | None = None


@dataclass
class Component:
    definition: str
    expression: str
    param: SearchParam | None = None  # resolved lazily
    steps: list[dict[str, Any]] | None = None
    types: list[str] = field(default_factory=list)


@dataclass
class SearchParam:
    url: str
    code: str
    base: list[str]
    type: str
    expression: str
    target: list[str] = field(default_factory=list)
    modifier: list[str] = field(default_factory=list)
    comparator: list[str] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    custom: bool = False

    def parts_for(self, resource_type: str) -> list[Part]:
        return [p for p in self.parts
                if p.resource in (resource_type, "Resource", "DomainResource", None)]


def _parse(raw: dict[str, Any], custom: bool) -> SearchParam:
    parts = raw.get("parts")
    if parts is None:  # custom parameter: compile now
        parts = []
        for branch in (raw.get("expression") or "").split(" | "):
            if not branch.strip():
                continue
            compiled = compile_part(branch)
            if compiled:
                parts.append(compiled)
            else:
                root = branch.strip().lstrip("(").split(".", 1)[0]
                parts.append({"resource": root, "fhirpath": branch.strip()})
    return SearchParam(
        url=raw["url"], code=raw["code"], base=list(raw["base"]), type=raw["type"],
        expression=raw.get("expression") or "", target=list(raw.get("target") or []),
        modifier=list(raw.get("modifier") or []), comparator=list(raw.get("comparator") or []),
        components=[Component(c["definition"], c["expression"]) for c in raw.get("component") or []],
        parts=[Part(p.get("resource"), p.get("steps"), p.get("types", []), p.get("fhirpath")) for p in parts],
        custom=custom,
    )


@lru_cache(maxsize=1)
def _base_params() -> list[dict[str, Any]]:
    with gzip.open(DATA / "search-parameters.json.gz", "rt", encoding="utf-8") as fh:
        data: list[dict[str, Any]] = json.load(fh)
    return data


@lru_cache(maxsize=1)
def compartment_definitions() -> dict[str, dict[str, list[str]]]:
    """compartment code (Patient, Encounter, ...) -> resource type -> param codes."""
    with gzip.open(DATA / "compartments.json.gz", "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return {c["code"]: c["resource"] for c in data}


class SearchParamRegistry:
    """Thread-safe lookup; a version counter lets caches notice custom additions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_type: dict[str, dict[str, SearchParam]] = {}
        self._by_url: dict[str, SearchParam] = {}
        self.version = 0
        self._registered: list[dict[str, Any]] = []  # every register() call, in order (see replay_of)
        self.resource_types: frozenset[str] = element_types()[1]
        for raw in _base_params():
            self._add(_parse(raw, custom=False))
        self._resolve_components()

    def _add(self, sp: SearchParam) -> None:
        self._by_url[sp.url] = sp
        for base in sp.base:
            targets = self.resource_types if base in ("Resource", "DomainResource") else [base]
            for t in targets:
                self._by_type.setdefault(t, {})[sp.code] = sp

    def _resolve_components(self) -> None:
        for sp in self._by_url.values():
            if sp.type != "composite":
                continue
            for comp in sp.components:
                comp.param = self._by_url.get(comp.definition)
                for part in sp.parts:
                    if part.steps is None or comp.steps is not None:
                        continue
                    base_expr = part.resource or ""
                    full = compile_part(f"{self._expr_of(part)}.{comp.expression}")
                    if full and base_expr:
                        comp.steps = full["steps"][len(part.steps):]
                        comp.types = full["types"]

    @staticmethod
    def _expr_of(part: Part) -> str:
        """Rebuild a dotted path for a compiled part (field steps only)."""
        out = part.resource or ""
        for st in part.steps or []:
            if st["op"] != "field":
                break
            key = st["cands"][0]["key"]
            out += "." + key
        return out

    def register(self, resource: dict[str, Any]) -> SearchParam:
        """Add or replace a custom SearchParameter (from the API)."""
        sp = _parse(resource, custom=True)
        with self._lock:
            self._add(sp)
            self._resolve_components()
            self.version += 1
            self._registered.append(resource)
        return sp

    def registrations(self) -> list[dict[str, Any]]:
        """The custom SearchParameters registered so far, in order: ``replay_of`` rebuilds this registry
        (same parameters, same version) in another process."""
        with self._lock:
            return list(self._registered)

    @classmethod
    def replay_of(cls, registrations: list[dict[str, Any]]) -> SearchParamRegistry:
        registry = cls()
        for resource in registrations:
            registry.register(resource)
        return registry

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self._by_type.get(resource_type, {}).get(code)

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        return self._by_type.get(resource_type, {})

    def by_url(self, url: str) -> SearchParam | None:
        return self._by_url.get(url)

    def custom_params(self) -> list[SearchParam]:
        return [p for p in self._by_url.values() if p.custom]


_default: SearchParamRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> SearchParamRegistry:
    global _default
    with _default_lock:
        if _default is None:
            _default = SearchParamRegistry()
        return _default
