"""Search parameters whose index rows another parameter already writes: stored once, searched under both.

R4 defines parameters that are unions of others on the same resource type: Observation ``combo-code`` is
``code`` | ``component-code``, ``combo-value-quantity`` is ``value-quantity`` | ``component-value-quantity``,
the ``combo-*`` composites likewise; ``Patient.phonetic`` has ``name``'s expression. Extracted naively,
every Observation wrote its code, value and code-value pairs twice (a quarter of an HL7v2 ORU's index rows).

Here, per resource type, a parameter P is *covered* by parameters Q1..Qn when each Qi has P's type, every
expression branch of Qi is one of P's, the Qi's branches do not overlap, and for composites the components
are the same (relative expression, types, component type). Then P's rows for those branches are the Qi's
rows (same values, another parameter identity), so the extractor writes P's rows only for its remaining
branches, and a search on P matches P's rows OR the Qi's rows. Rows written before this existed (all of P's
branches under P) still match: P's own rows are always searched.

Data-driven and limited to the value types; reference parameters stay as they are (chains, ``_has``,
``_include`` and compartments read them by identity). A custom SearchParameter can be covered by base
parameters but never covers another parameter: it can be replaced or dropped later, and the rows it stood
in for would be missing.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from fhir_server.search.registry import Part, SearchParam, SearchParamRegistry

SHAREABLE = frozenset({"token", "string", "quantity", "number", "date", "uri", "composite"})


@dataclass(frozen=True)
class Sharing:
    """For one resource type and parameter: what it still extracts itself and whose rows complete it."""

    parts: list[Part]  # the branches this parameter writes rows for itself
    covered_by: tuple[SearchParam, ...]  # parameters whose rows stand for its other branches


def _part_key(part: Part) -> str:
    return json.dumps([part.resource, part.steps, part.fhirpath], sort_keys=True)


def _components_key(sp: SearchParam) -> str | None:
    if any(c.steps is None or c.param is None for c in sp.components):
        return None  # not extracted at all (see Extractor._add_composite): nothing to share
    return json.dumps([(c.steps, c.types, c.param.type if c.param else None) for c in sp.components],
                      sort_keys=True)


class SharedRows:
    """Per resource type, which parameters are covered by which; recomputed when the registry changes."""

    def __init__(self, registry: SearchParamRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._version = -1
        self._by_type: dict[str, dict[str, Sharing]] = {}

    def of(self, resource_type: str, sp: SearchParam) -> Sharing:
        """How ``sp`` is stored for ``resource_type`` (its own branches only, when covered)."""
        table = self._table(resource_type)
        found = table.get(sp.code)
        if found is not None and self.registry.get(resource_type, sp.code) is sp:
            return found
        return Sharing(sp.parts_for(resource_type), ())

    def _table(self, resource_type: str) -> dict[str, Sharing]:
        with self._lock:
            if self._version != self.registry.version:
                self._by_type, self._version = {}, self.registry.version
            table = self._by_type.get(resource_type)
            if table is None:
                table = self._by_type[resource_type] = self._compute(resource_type)
            return table

    def _compute(self, resource_type: str) -> dict[str, Sharing]:
        params = {code: sp for code, sp in self.registry.for_type(resource_type).items() if sp.type in SHAREABLE}
        branches = {code: {_part_key(p): p for p in sp.parts_for(resource_type)} for code, sp in params.items()}
        comps = {code: _components_key(sp) for code, sp in params.items() if sp.type == "composite"}
        covers: dict[str, list[str]] = {}
        for code, sp in sorted(params.items()):
            mine = set(branches[code])
            candidates = []
            for other, osp in params.items():
                theirs = set(branches[other])
                if other == code or osp.type != sp.type or osp.custom or not theirs or not theirs <= mine:
                    continue  # (a custom parameter can be replaced or dropped later: it never stands in)
                if theirs == mine and not sp.custom and other > code:
                    continue  # two base parameters with one expression: the first code stores the rows
                if sp.type == "composite" and (comps[code] is None or comps[code] != comps[other]):
                    continue
                candidates.append((len(theirs), other))
            chosen: list[str] = []
            taken: set[str] = set()
            for _n, other in sorted(candidates, key=lambda c: (-c[0], c[1])):
                if not taken & set(branches[other]):
                    chosen.append(other)
                    taken |= set(branches[other])
            if chosen:
                covers[code] = chosen
        # a covering parameter must write all its own rows: drop covers by parameters that are covered too
        table: dict[str, Sharing] = {}
        for code, chosen in covers.items():
            usable = [other for other in chosen if other not in covers]
            if not usable:
                continue
            taken = {k for other in usable for k in branches[other]}
            own = [p for k, p in branches[code].items() if k not in taken]
            table[code] = Sharing(own, tuple(params[other] for other in usable))
        return table
