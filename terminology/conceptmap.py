"""ConceptMap ``$translate`` over the indexed map elements (forward and reverse)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from terminology.errors import TerminologyError
from terminology.schema import concept_map, map_element

JsonDict = dict[str, Any]
_NEGATIVE = ("unmatched", "disjoint")


def translate(engine: Engine, system: str, code: str, url: str | None = None, source: str | None = None,
              target: str | None = None, target_system: str | None = None, reverse: bool = False,
              ) -> JsonDict:
    if not code:
        raise TerminologyError("$translate needs a code (code+system, coding or codeableConcept)")
    me, cm = map_element, concept_map
    q = select(me, cm.c.url.label("map_url")).join(cm, cm.c.id == me.c.cm_id)
    if reverse:
        q = q.where(me.c.target_code == code)
        if system:
            q = q.where(me.c.target_system == system)
        if target_system:
            q = q.where(me.c.source_system == target_system)
    else:
        q = q.where(me.c.source_code == code)
        if system:
            q = q.where(me.c.source_system == system)
        if target_system:
            q = q.where(me.c.target_system == target_system)
    if url:
        base, _, ver = url.partition("|")
        q = q.where(cm.c.url == base)
        if ver:
            q = q.where(cm.c.version == ver)
    # With reverse, the caller's "source" value set is the map's target and vice versa.
    if source:
        q = q.where((cm.c.target if reverse else cm.c.source) == source)
    if target:
        q = q.where((cm.c.source if reverse else cm.c.target) == target)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(me.c.cm_id)).mappings().all()
    matches: list[JsonDict] = []
    for r in rows:
        eq = r["equivalence"]
        m: JsonDict = {"equivalence": eq, "source": r["map_url"]}
        if reverse:
            concept = {"system": r["source_system"], "code": r["source_code"], "display": r["source_display"]}
        elif r["target_code"] is not None:
            concept = {"system": r["target_system"], "code": r["target_code"], "display": r["target_display"]}
        else:
            concept = None
        if concept is not None:
            m["concept"] = {k: v for k, v in concept.items() if v}
        if r["comment"]:
            m["comment"] = r["comment"]
        matches.append(m)
    ok = any(m["equivalence"] not in _NEGATIVE and "concept" in m for m in matches)
    direction = "reverse " if reverse else ""
    message = None if ok else f"No {direction}mapping found for {system}#{code}"
    return {"result": ok, "message": message, "match": matches}
