"""Writing CodeSystem, ValueSet and ConceptMap resources into the terminology tables.

Everything here takes an open SQLAlchemy ``Connection`` inside the caller's
transaction, so a package load is one transaction per batch and a failed load
leaves nothing half-written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, delete, func, insert, literal, select

from terminology.schema import (
    closure,
    code_system,
    concept,
    concept_map,
    concept_property,
    designation,
    map_element,
    parent,
    value_set,
)

JsonDict = dict[str, Any]
BATCH = 5000

_VALUE_KEYS = (
    ("valueCode", "code"), ("valueString", "string"), ("valueBoolean", "boolean"),
    ("valueInteger", "integer"), ("valueDecimal", "decimal"), ("valueDateTime", "dateTime"),
    ("valueCoding", "coding"),
)


def property_value(prop: JsonDict) -> tuple[str, str, str | None] | None:
    """Normalise a CodeSystem concept property to (type, text value, coding system)."""
    for key, vtype in _VALUE_KEYS:
        if key in prop:
            v = prop[key]
            if vtype == "coding":
                return vtype, str(v.get("code", "")), v.get("system")
            if vtype == "boolean":
                return vtype, "true" if v else "false", None
            return vtype, str(v), None
    return None


def _chunks(rows: Iterable[JsonDict], size: int = BATCH) -> Iterator[list[JsonDict]]:
    buf: list[JsonDict] = []
    for r in rows:
        buf.append(r)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def insert_batched(conn: Connection, table: Any, rows: Iterable[JsonDict]) -> int:
    n = 0
    for chunk in _chunks(rows):
        conn.execute(insert(table), chunk)
        n += len(chunk)
    return n


def delete_code_system(conn: Connection, cs_id: int) -> None:
    for t in (closure, parent, concept_property, designation, concept):
        conn.execute(delete(t).where(t.c.cs_id == cs_id))
    conn.execute(delete(code_system).where(code_system.c.id == cs_id))


def create_code_system_row(conn: Connection, resource: JsonDict, content: str | None = None,
                           origin: str | None = None) -> int:
    """Insert (replacing any same url+version) the header row of a code system; returns its id."""
    url = resource["url"]
    version = resource.get("version") or ""
    old = conn.execute(select(code_system.c.id).where(code_system.c.url == url,
                                                      code_system.c.version == version)).scalar()
    if old is not None:
        delete_code_system(conn, old)
    header = {k: v for k, v in resource.items() if k not in ("concept", "text")}
    res = conn.execute(insert(code_system).values(
        url=url, version=version, name=resource.get("name"),
        content=content or resource.get("content") or "complete",
        case_sensitive=bool(resource.get("caseSensitive", True)),
        value_set=resource.get("valueSet"), concept_count=0,
        resource=json.dumps(header, separators=(",", ":")), origin=origin,
    ))
    pk = res.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def load_code_system(conn: Connection, resource: JsonDict, origin: str | None = None) -> int:
    """Store a FHIR CodeSystem: concepts in definition order, properties, designations, closure."""
    content = resource.get("content") or "complete"
    if content == "supplement":
        return _load_supplement(conn, resource)
    cs_id = create_code_system_row(conn, resource, origin=origin)
    concepts: list[JsonDict] = []
    props: list[JsonDict] = []
    desigs: list[JsonDict] = []
    edges: set[tuple[int, int]] = set()
    pending: list[tuple[int, str, bool]] = []  # (seq, other code, other-is-parent)
    seq_of: dict[str, int] = {}

    def walk(items: list[JsonDict], parent_seq: int | None) -> None:
        for c in items:
            code = c.get("code")
            if not code or code in seq_of:
                continue
            seq = len(concepts) + 1
            seq_of[code] = seq
            inactive = abstract = False
            for p in c.get("property", []):
                pv = property_value(p)
                if pv is None:
                    continue
                pcode = p.get("code", "")
                props.append({"cs_id": cs_id, "seq": seq, "code": pcode, "value_type": pv[0],
                              "value": pv[1], "value_system": pv[2]})
                if pcode == "notSelectable" and pv[1] == "true":
                    abstract = True
                elif pcode == "inactive" and pv[1] == "true":
                    inactive = True
                elif pcode == "status" and pv[1] in ("inactive", "deprecated"):
                    inactive = True
                elif pcode in ("parent", "subsumedBy") and pv[0] in ("code", "coding"):
                    pending.append((seq, pv[1], True))
                elif pcode == "child" and pv[0] in ("code", "coding"):
                    pending.append((seq, pv[1], False))
            for d in c.get("designation", []):
                if d.get("value"):
                    use = d.get("use") or {}
                    desigs.append({"cs_id": cs_id, "seq": seq, "language": d.get("language"),
                                   "use_system": use.get("system"), "use_code": use.get("code"),
                                   "value": d["value"]})
            concepts.append({"cs_id": cs_id, "seq": seq, "code": code, "display": c.get("display"),
                             "definition": c.get("definition"), "inactive": inactive,
                             "abstract": abstract})
            if parent_seq is not None:
                edges.add((seq, parent_seq))
            walk(c.get("concept", []), seq)

    walk(resource.get("concept", []), None)
    for seq, other, other_is_parent in pending:
        o = seq_of.get(other)
        if o is not None and o != seq:
            edges.add((seq, o) if other_is_parent else (o, seq))
    insert_batched(conn, concept, concepts)
    insert_batched(conn, concept_property, props)
    insert_batched(conn, designation, desigs)
    insert_batched(conn, parent, ({"cs_id": cs_id, "child": c, "parent": p} for c, p in sorted(edges)))
    insert_batched(conn, closure, _closure_rows(cs_id, edges))
    conn.execute(code_system.update().where(code_system.c.id == cs_id).values(concept_count=len(concepts)))
    return cs_id


def _closure_rows(cs_id: int, edges: set[tuple[int, int]]) -> Iterator[JsonDict]:
    """In-memory closure for the small hierarchies of FHIR code systems (BFS per concept)."""
    parents: dict[int, list[int]] = {}
    for c, p in edges:
        parents.setdefault(c, []).append(p)
    for start in parents:
        seen: dict[int, int] = {}
        frontier = [start]
        depth = 0
        while frontier:
            depth += 1
            nxt = []
            for node in frontier:
                for p in parents.get(node, ()):
                    if p not in seen and p != start:
                        seen[p] = depth
                        nxt.append(p)
            frontier = nxt
        for anc, d in seen.items():
            yield {"cs_id": cs_id, "ancestor": anc, "descendant": start, "depth": d}


def build_closure_sql(conn: Connection, cs_id: int, progress: Any = None) -> int:
    """Closure for big imported hierarchies, computed inside the database level by level.

    Python memory stays constant; each pass adds the pairs one edge further away
    (a pair is kept at its shortest distance only).
    """
    conn.execute(delete(closure).where(closure.c.cs_id == cs_id))
    conn.execute(insert(closure).from_select(
        ["cs_id", "ancestor", "descendant", "depth"],
        select(parent.c.cs_id, parent.c.parent, parent.c.child, literal(1)).where(parent.c.cs_id == cs_id),
    ))
    depth = 1
    total = conn.execute(select(func.count()).select_from(closure).where(closure.c.cs_id == cs_id)).scalar()
    total = int(total or 0)
    while True:
        c = closure.alias("c")
        x = closure.alias("x")
        sel = (
            select(c.c.cs_id, parent.c.parent, c.c.descendant, literal(depth + 1))
            .distinct()
            .join(parent, (parent.c.cs_id == c.c.cs_id) & (parent.c.child == c.c.ancestor))
            .where(c.c.cs_id == cs_id, c.c.depth == depth)
            .where(~select(literal(1)).where(x.c.cs_id == cs_id, x.c.ancestor == parent.c.parent,
                                              x.c.descendant == c.c.descendant).exists())
        )
        added = conn.execute(insert(closure).from_select(
            ["cs_id", "ancestor", "descendant", "depth"], sel)).rowcount
        if not added or added < 0:
            break
        total += added
        depth += 1
        if progress is not None:
            progress(depth, total)
    return total


def _load_supplement(conn: Connection, resource: JsonDict) -> int:
    """A supplement adds designations/properties to concepts of the code system it supplements."""
    base_url = (resource.get("supplements") or "").split("|")[0]
    base = conn.execute(select(code_system.c.id).where(code_system.c.url == base_url)
                        .order_by(code_system.c.id.desc())).scalar()
    if base is None:
        return create_code_system_row(conn, resource, content="supplement")
    codes = dict(conn.execute(select(concept.c.code, concept.c.seq).where(concept.c.cs_id == base)).all())
    rows: list[JsonDict] = []

    def walk(items: list[JsonDict]) -> None:
        for c in items:
            seq = codes.get(c.get("code", ""))
            if seq is not None:
                for d in c.get("designation", []):
                    if d.get("value"):
                        use = d.get("use") or {}
                        rows.append({"cs_id": base, "seq": seq, "language": d.get("language"),
                                     "use_system": use.get("system"), "use_code": use.get("code"),
                                     "value": d["value"]})
            walk(c.get("concept", []))

    walk(resource.get("concept", []))
    insert_batched(conn, designation, rows)
    return create_code_system_row(conn, resource, content="supplement")


def load_value_set(conn: Connection, resource: JsonDict, origin: str | None = None) -> int:
    url = resource["url"]
    version = resource.get("version") or ""
    conn.execute(delete(value_set).where(value_set.c.url == url, value_set.c.version == version))
    body = {k: v for k, v in resource.items() if k != "text"}
    res = conn.execute(insert(value_set).values(url=url, version=version, name=resource.get("name"),
                                                resource=json.dumps(body, separators=(",", ":")),
                                                origin=origin))
    pk = res.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def delete_concept_map(conn: Connection, cm_id: int) -> None:
    conn.execute(delete(map_element).where(map_element.c.cm_id == cm_id))
    conn.execute(delete(concept_map).where(concept_map.c.id == cm_id))


def _canonical(res: JsonDict, prefix: str) -> str | None:
    v = res.get(prefix + "Uri") or res.get(prefix + "Canonical")
    return str(v) if v else None


def load_concept_map(conn: Connection, resource: JsonDict, origin: str | None = None) -> int:
    url = resource["url"]
    version = resource.get("version") or ""
    old = conn.execute(select(concept_map.c.id).where(concept_map.c.url == url,
                                                      concept_map.c.version == version)).scalar()
    if old is not None:
        delete_concept_map(conn, old)
    body = {k: v for k, v in resource.items() if k != "text"}
    res = conn.execute(insert(concept_map).values(
        url=url, version=version, source=_canonical(resource, "source"),
        target=_canonical(resource, "target"), resource=json.dumps(body, separators=(",", ":")),
        origin=origin))
    pk = res.inserted_primary_key
    assert pk is not None
    cm_id = int(pk[0])

    def rows() -> Iterator[JsonDict]:
        for g in resource.get("group", []):
            for el in g.get("element", []):
                if not el.get("code"):
                    continue
                base = {"cm_id": cm_id, "source_system": g.get("source"),
                        "source_version": g.get("sourceVersion"), "source_code": el["code"],
                        "source_display": el.get("display")}
                targets = el.get("target") or []
                if not targets:
                    yield {**base, "target_system": None, "target_version": None, "target_code": None,
                           "target_display": None, "equivalence": "unmatched", "comment": None}
                for t in targets:
                    yield {**base, "target_system": g.get("target"), "target_version": g.get("targetVersion"),
                           "target_code": t.get("code"), "target_display": t.get("display"),
                           "equivalence": t.get("equivalence") or "equivalent", "comment": t.get("comment")}

    insert_batched(conn, map_element, rows())
    return cm_id
