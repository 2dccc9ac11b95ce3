"""_include and _revinclude (with :iterate and *) for one page of search matches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select

from fhir_server.repository import StoredResource
from fhir_server.search.extract import identity
from fhir_server.search.query import Include, SearchQuery
from fhir_server.storage import tables as T

if TYPE_CHECKING:
    from fhir_server.storage.search_sql import Cond, SqlSearch

ITERATE_ROUNDS = 4
ROWS_PER_STEP = 5000


def includes(search: SqlSearch, q: SearchQuery, match_pks: list[int], matches: list[StoredResource]
             ) -> list[StoredResource]:
    seen = {(m.resource_type, m.id) for m in matches}
    out: list[StoredResource] = []
    frontier = list(zip(match_pks, matches, strict=True))
    first = True
    for _depth in range(ITERATE_ROUNDS):
        found: list[tuple[int, StoredResource]] = []
        for inc in q.includes:
            if not first and not inc.iterate:
                continue
            found.extend(_include_step(search, inc, frontier))
        new = []
        for pk, res in found:
            key = (res.resource_type, res.id)
            if key not in seen and len(out) < q.max_include:
                seen.add(key)
                out.append(res)
                new.append((pk, res))
        if not new or not any(i.iterate for i in q.includes):
            break
        frontier = new
        first = False
    return out

def _include_step(search: SqlSearch, inc: Include, frontier: list[tuple[int, StoredResource]]
                  ) -> list[tuple[int, StoredResource]]:
    if not frontier:
        return []
    ref = T.idx_reference
    t = T.resource.alias("t")
    cols = (t.c.pk, t.c.res_type, t.c.fhir_id, t.c.version, t.c.last_updated, t.c.deleted, t.c.body)
    conds: list[Cond]
    if not inc.reverse:
        src = [pk for pk, res in frontier if inc.source_type in ("*", res.resource_type)]
        if not src:
            return []
        conds = [ref.c.res_pk.in_(src)]
        if inc.param != "*":
            types = {res.resource_type for _, res in frontier if inc.source_type in ("*", res.resource_type)}
            conds.append(ref.c.hash_identity.in_([identity(rt, inc.param) for rt in types]))
        if inc.target_type:
            conds.append(ref.c.target_type == inc.target_type)
        stmt = select(*cols).select_from(t.join(ref, and_(ref.c.target_id == t.c.fhir_id,
                                                           ref.c.target_type == t.c.res_type)))
        stmt = stmt.where(*conds, t.c.deleted.is_(False)).distinct().limit(ROWS_PER_STEP)
    else:
        pairs = [(res.resource_type, res.id) for _, res in frontier
                 if inc.target_type in (None, res.resource_type)]
        if not pairs:
            return []
        by_type: dict[str, list[str]] = {}
        for rtype, rid in pairs:
            by_type.setdefault(rtype, []).append(rid)
        # per type an IN on target_id: an index range scan (a row-value IN would scan the whole table on SQLite)
        conds = [or_(*[and_(ref.c.target_id.in_(ids), ref.c.target_type == rtype) for rtype, ids in by_type.items()])]
        if inc.param != "*":
            conds.append(ref.c.hash_identity == identity(inc.source_type, inc.param))
        stmt = select(*cols).select_from(t.join(ref, ref.c.res_pk == t.c.pk)).where(
            *conds, t.c.deleted.is_(False))
        if inc.source_type != "*":
            stmt = stmt.where(t.c.res_type == inc.source_type)
        stmt = stmt.distinct().limit(ROWS_PER_STEP)
    rows = search.conn.execute(stmt).all()
    return [(row.pk, search.repo._row_to_stored(row)) for row in rows]
