"""Read access to the terminology tables, with the small in-process caches that make
``$validate-code`` and ``in_value_set`` cheap on a warm server.

Caches are keyed by a generation number that every load bumps, so a process never
serves a stale code system after it loaded a new one itself. (Other processes see
new content after ``invalidate()`` or a restart; loads are admin operations.)
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from terminology.schema import (
    closure,
    code_system,
    concept,
    concept_property,
    designation,
    parent,
    value_set,
)

JsonDict = dict[str, Any]
_IN_CHUNK = 900


@dataclass(frozen=True)
class CodeSystemInfo:
    id: int
    url: str
    version: str
    name: str | None
    content: str
    case_sensitive: bool
    value_set: str | None
    concept_count: int

    @property
    def enumerable(self) -> bool:
        """Whether this server holds every code of the system (so absence means 'not a code')."""
        return self.content == "complete"


@dataclass(frozen=True)
class Concept:
    cs: CodeSystemInfo
    seq: int
    code: str
    display: str | None
    definition: str | None
    inactive: bool
    abstract: bool


class LRU:
    """A tiny thread-safe LRU map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return default

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_MISSING = object()


class TerminologyIndex:
    """Queries over the concept tables; every method opens its own short connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cs = LRU(4096)
        self._vs = LRU(4096)
        self._concept = LRU(50_000)

    def invalidate(self) -> None:
        self._cs.clear()
        self._vs.clear()
        self._concept.clear()

    # -- code systems -------------------------------------------------------------
    def code_system(self, url: str, version: str | None = None) -> CodeSystemInfo | None:
        if "|" in url and version is None:
            url, version = url.split("|", 1)
        key = (url, version or None)
        hit = self._cs.get(key, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[no-any-return]
        q = select(code_system).where(code_system.c.url == url, code_system.c.content != "supplement")
        if version:
            q = q.where(code_system.c.version == version)
        with self.engine.connect() as conn:
            row = conn.execute(q.order_by(code_system.c.id.desc()).limit(1)).mappings().first()
        info = None
        if row is not None:
            info = CodeSystemInfo(row["id"], row["url"], row["version"], row["name"], row["content"],
                                  bool(row["case_sensitive"]), row["value_set"], row["concept_count"])
        self._cs.put(key, info)
        return info

    def code_system_by_value_set(self, vs_url: str) -> CodeSystemInfo | None:
        """The code system whose ``valueSet`` is this URL (the implicit 'all codes' value set)."""
        with self.engine.connect() as conn:
            url = conn.execute(select(code_system.c.url).where(code_system.c.value_set == vs_url)
                               .order_by(code_system.c.id.desc()).limit(1)).scalar()
        return self.code_system(url) if url else None

    def code_system_resource(self, cs: CodeSystemInfo) -> JsonDict:
        with self.engine.connect() as conn:
            text = conn.execute(select(code_system.c.resource).where(code_system.c.id == cs.id)).scalar()
        return json.loads(text) if text else {}

    def list_code_systems(self) -> list[CodeSystemInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(code_system).order_by(code_system.c.id)).mappings().all()
        return [CodeSystemInfo(r["id"], r["url"], r["version"], r["name"], r["content"],
                               bool(r["case_sensitive"]), r["value_set"], r["concept_count"]) for r in rows]

    # -- concepts -----------------------------------------------------------------
    def _row(self, cs: CodeSystemInfo, r: Any) -> Concept:
        return Concept(cs, r.seq, r.code, r.display, r.definition, bool(r.inactive), bool(r.abstract))

    def concept(self, cs: CodeSystemInfo, code: str) -> Concept | None:
        key = (cs.id, code)
        hit = self._concept.get(key, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[no-any-return]
        cols = (concept.c.seq, concept.c.code, concept.c.display, concept.c.definition,
                concept.c.inactive, concept.c.abstract)
        with self.engine.connect() as conn:
            r = conn.execute(select(*cols).where(concept.c.cs_id == cs.id, concept.c.code == code)).first()
            if r is None and not cs.case_sensitive:
                r = conn.execute(select(*cols).where(concept.c.cs_id == cs.id,
                                                     func.lower(concept.c.code) == code.lower())).first()
        found = self._row(cs, r) if r is not None else None
        self._concept.put(key, found)
        return found

    def concepts(self, cs: CodeSystemInfo, seqs: Iterable[int] | None = None) -> list[Concept]:
        """Concepts in definition order: all of them, or those with the given sequence numbers."""
        cols = (concept.c.seq, concept.c.code, concept.c.display, concept.c.definition,
                concept.c.inactive, concept.c.abstract)
        base = select(*cols).where(concept.c.cs_id == cs.id)
        out: list[Concept] = []
        with self.engine.connect() as conn:
            if seqs is None:
                out = [self._row(cs, r) for r in conn.execute(base.order_by(concept.c.seq))]
                return out
            wanted = sorted(set(seqs))
            if len(wanted) > cs.concept_count // 4:
                keep = set(wanted)
                return [self._row(cs, r) for r in conn.execute(base.order_by(concept.c.seq)) if r.seq in keep]
            for i in range(0, len(wanted), _IN_CHUNK):
                part = wanted[i:i + _IN_CHUNK]
                out.extend(self._row(cs, r) for r in conn.execute(base.where(concept.c.seq.in_(part))))
        out.sort(key=lambda c: c.seq)
        return out

    def descendant_concepts(self, cs: CodeSystemInfo, seq: int) -> list[Concept]:
        """Descendants in definition order with one closure join (the big is-a expansions)."""
        cols = (concept.c.seq, concept.c.code, concept.c.display, concept.c.definition,
                concept.c.inactive, concept.c.abstract)
        q = (select(*cols).join(closure, (closure.c.cs_id == concept.c.cs_id)
                                & (closure.c.descendant == concept.c.seq))
             .where(closure.c.cs_id == cs.id, closure.c.ancestor == seq).order_by(concept.c.seq))
        with self.engine.connect() as conn:
            return [self._row(cs, r) for r in conn.execute(q)]

    def seqs_for_codes(self, cs: CodeSystemInfo, codes: Iterable[str]) -> dict[str, int]:
        codes = list(dict.fromkeys(codes))
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(codes), _IN_CHUNK):
                q = select(concept.c.code, concept.c.seq).where(concept.c.cs_id == cs.id,
                                                                concept.c.code.in_(codes[i:i + _IN_CHUNK]))
                out.update({r.code: r.seq for r in conn.execute(q)})
        return out

    def all_seqs(self, cs: CodeSystemInfo) -> set[int]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(concept.c.seq).where(concept.c.cs_id == cs.id)).scalars())

    def descendants(self, cs: CodeSystemInfo, seq: int) -> set[int]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(closure.c.descendant).where(
                closure.c.cs_id == cs.id, closure.c.ancestor == seq)).scalars())

    def ancestors(self, cs: CodeSystemInfo, seq: int) -> set[int]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(closure.c.ancestor).where(
                closure.c.cs_id == cs.id, closure.c.descendant == seq)).scalars())

    def is_descendant(self, cs: CodeSystemInfo, ancestor: int, descendant: int) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(closure.c.depth).where(
                closure.c.cs_id == cs.id, closure.c.ancestor == ancestor,
                closure.c.descendant == descendant)).first() is not None

    def parents(self, cs: CodeSystemInfo, seq: int) -> list[Concept]:
        with self.engine.connect() as conn:
            ps = list(conn.execute(select(parent.c.parent).where(parent.c.cs_id == cs.id,
                                                                 parent.c.child == seq)).scalars())
        return self.concepts(cs, ps) if ps else []

    def children(self, cs: CodeSystemInfo, seq: int) -> list[Concept]:
        with self.engine.connect() as conn:
            cs_ = list(conn.execute(select(parent.c.child).where(parent.c.cs_id == cs.id,
                                                                 parent.c.parent == seq)).scalars())
        return self.concepts(cs, cs_) if cs_ else []

    def children_seqs(self, cs: CodeSystemInfo, seq: int) -> set[int]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(parent.c.child).where(parent.c.cs_id == cs.id,
                                                                 parent.c.parent == seq)).scalars())

    def parent_seqs(self, cs: CodeSystemInfo, seq: int) -> set[int]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(parent.c.parent).where(parent.c.cs_id == cs.id,
                                                                  parent.c.child == seq)).scalars())

    def related_seqs(self, cs: CodeSystemInfo, has_parent: bool) -> set[int]:
        col = parent.c.child if has_parent else parent.c.parent
        with self.engine.connect() as conn:
            return set(conn.execute(select(col).distinct().where(parent.c.cs_id == cs.id)).scalars())

    def properties(self, cs: CodeSystemInfo, seq: int) -> list[dict[str, str | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(concept_property.c.code, concept_property.c.value_type,
                                       concept_property.c.value, concept_property.c.value_system)
                                .where(concept_property.c.cs_id == cs.id, concept_property.c.seq == seq))
            return [dict(r._mapping) for r in rows]

    def property_seqs(self, cs: CodeSystemInfo, prop: str, values: list[str] | None) -> set[int]:
        """Concepts having the property (any value when ``values`` is None)."""
        q = select(concept_property.c.seq).where(concept_property.c.cs_id == cs.id,
                                                  concept_property.c.code == prop)
        if values is not None:
            q = q.where(concept_property.c.value.in_(values))
        with self.engine.connect() as conn:
            return set(conn.execute(q).scalars())

    def property_values(self, cs: CodeSystemInfo, prop: str) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            return [(r.seq, r.value) for r in conn.execute(
                select(concept_property.c.seq, concept_property.c.value)
                .where(concept_property.c.cs_id == cs.id, concept_property.c.code == prop))]

    def designations(self, cs: CodeSystemInfo, seqs: Iterable[int]) -> dict[int, list[JsonDict]]:
        wanted = sorted(set(seqs))
        out: dict[int, list[JsonDict]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), _IN_CHUNK):
                q = select(designation).where(designation.c.cs_id == cs.id,
                                              designation.c.seq.in_(wanted[i:i + _IN_CHUNK]))
                for r in conn.execute(q).mappings():
                    d: JsonDict = {"value": r["value"]}
                    if r["language"]:
                        d["language"] = r["language"]
                    if r["use_code"]:
                        d["use"] = {"system": r["use_system"], "code": r["use_code"]}
                    out.setdefault(r["seq"], []).append(d)
        return out

    # -- value sets -----------------------------------------------------------------
    def value_set(self, url: str, version: str | None = None) -> JsonDict | None:
        if "|" in url and version is None:
            url, version = url.split("|", 1)
        key = (url, version or None)
        hit = self._vs.get(key, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[no-any-return]
        q = select(value_set.c.resource).where(value_set.c.url == url)
        if version:
            q = q.where(value_set.c.version == version)
        with self.engine.connect() as conn:
            text = conn.execute(q.order_by(value_set.c.id.desc()).limit(1)).scalar()
        res = json.loads(text) if text else None
        self._vs.put(key, res)
        return res
