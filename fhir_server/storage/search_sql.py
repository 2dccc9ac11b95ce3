"""Compiles a parsed ``SearchQuery`` to SQL over the index tables.

Every criterion becomes ``pk IN (SELECT res_pk FROM idx_* WHERE <hashed identity>)``
so each hits one index (the per-type conditions: search_conditions); chains and ``_has`` nest the same
building blocks.
Paging is keyset-based (the cursor holds the last row's sort values and pk),
never a deep OFFSET.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    CompoundSelect,
    Connection,
    Select,
    and_,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    true,
    union_all,
)

from fhir_server.errors import bad_request
from fhir_server.search.extract import identity
from fhir_server.search.query import Criterion, SearchQuery, SearchResult
from fhir_server.search.registry import SearchParam
from fhir_server.search.values import escape_split, h64
from fhir_server.storage import tables as T
from fhir_server.storage.engine import any_of, driver_rows, list_param, param_mark
from fhir_server.storage.search_conditions import ValueConditions
from fhir_server.storage.search_includes import includes
from fhir_server.storage.search_paging import Cond, encode_cursor, keyset, sort_expr

if TYPE_CHECKING:
    from fhir_server.storage.repository import SqlFhirRepository

FAST_LOOKUP_MAX = 500  # identifier-style lookups matching more keys than this take the general path
_FAST_ROWS = {sqlite: "SELECT pk, res_type, fhir_id, version, last_updated, deleted, body FROM fhir_resource "
                      f"WHERE pk {any_of(sqlite)} AND res_type = {'?' if sqlite else '%s'} "
                      f"AND deleted = {'?' if sqlite else '%s'}" for sqlite in (True, False)}
# PostgreSQL, one criterion: its keys and their rows in one round trip. The keys become an array once (a
# materialised CTE), and the rows are read by primary key only, so no plan can start from another index
# (res_type and deleted are checked on the rows: the keys already belong to the type).
_FAST_ONE_PG = ("WITH k AS MATERIALIZED (SELECT ARRAY({keys}) AS a) "
                "SELECT cardinality(k.a) AS n_keys, r.pk, r.res_type, r.fhir_id, r.version, r.last_updated, "
                "r.deleted, r.body FROM k LEFT JOIN fhir_resource r ON r.pk = ANY(k.a)")
TOTAL_BOUND = 1000  # default _total: exact up to this many, omitted above (keeps page one fast)


UNSELECTIVE = 6
HAS_PROBE_ABOVE = 10_000  # _has: more matching referrers than this -> probe candidates instead (see _has)
CHAIN_DRIVE_UP_TO = 10_000  # PostgreSQL: a chain through several target types drives from its targets up to
# this many referrers (see _chain_any_target)


def selectivity_rank(c: Criterion) -> int:
    """Rough selectivity from the criterion's shape alone (lower drives the query)."""
    if c.modifier in ("missing", "not", "not-in") or c.kind == "type":
        return 9
    if c.kind == "id":
        return 0
    if c.kind == "compartment":
        return 1
    if c.kind == "param" and c.param is not None:
        return {"reference": 1, "token": 3, "string": 2 if c.modifier == "exact" else 3, "uri": 2,
                "composite": 3}.get(c.param.type, UNSELECTIVE)
    if c.kind in ("text", "content"):
        return 3
    if c.kind == "chain":
        return 4
    if c.kind == "has":
        return 5
    if c.kind == "or":
        return max((selectivity_rank(s) for s in c.subs), default=9)
    if c.kind == "and":
        return min((selectivity_rank(s) for s in c.subs), default=9)
    return UNSELECTIVE


class SqlSearch(ValueConditions):
    """One search: criteria ordered by selectivity, chains, ``_has``, compartments, sort, paging, includes."""

    def __init__(self, repo: SqlFhirRepository, conn: Connection) -> None:
        self.repo = repo
        self.conn = conn
        self.base_url = (repo.extractor.base_url or "").rstrip("/")
        self.shared = repo.extractor.shared

    # ------------------------------------------------------------------ entry
    def run(self, q: SearchQuery) -> SearchResult:
        fast = self._fast_token_search(q)
        if fast is not None:
            return fast
        r = T.resource.alias("r")
        where: list[Cond] = [r.c.deleted.is_(False)]
        if q.resource_types:
            where.append(r.c.res_type.in_(q.resource_types) if len(q.resource_types) > 1
                         else r.c.res_type == q.resource_types[0])
        # The most selective criterion drives (pk IN its index lookup); the others are probed per candidate
        # row (correlated EXISTS on the per-resource indexes), so a common code or a wide date range never
        # materialises hundreds of thousands of rows.
        ranked = sorted(q.criteria, key=selectivity_rank)
        for n, crit in enumerate(ranked):
            self._probe_for = r if n > 0 and selectivity_rank(ranked[0]) < UNSELECTIVE else None
            where.append(self.condition(crit, r))
        self._probe_for = None
        filt = and_(*where)

        total: int | None = None
        if q.summary_count or q.total == "accurate" or (q.count <= 0 and q.total != "none"):
            total = self.conn.execute(select(func.count()).select_from(r).where(filt)).scalar()
        if q.summary_count:
            return SearchResult([], [], total)

        sort_cols = [sort_expr(k, r, self.shared) for k in q.sort]
        order = []
        for k, col in zip(q.sort, sort_cols, strict=True):
            order.append(col.desc() if k.descending else col.asc())
        order.append(r.c.pk.asc())
        stmt = select(r.c.pk, r.c.res_type, r.c.fhir_id, r.c.version, r.c.last_updated, r.c.deleted, r.c.body,
                      *[c.label(f"s{i}") for i, c in enumerate(sort_cols)]).where(filt)
        if q.cursor:
            stmt = stmt.where(keyset(q, sort_cols, r))
        elif q.offset:
            stmt = stmt.offset(q.offset)
        rows = self.conn.execute(stmt.order_by(*order).limit(q.count + 1)).all() if q.count > 0 else []
        has_more = len(rows) > q.count
        rows = rows[:q.count]
        matches = [self.repo._row_to_stored(row) for row in rows]
        next_cursor = None
        if has_more and rows:
            last = rows[-1]
            next_cursor = encode_cursor([getattr(last, f"s{i}") for i in range(len(sort_cols))] + [last.pk])

        if total is None and q.total != "none":
            if not q.cursor and not q.offset and not has_more:
                total = len(matches)
            elif q.total == "estimate":
                total = self.estimate(select(r.c.pk).where(filt))
            elif q.total == "default":
                bounded = select(r.c.pk).where(filt).limit(TOTAL_BOUND + 1).subquery()
                n = self.conn.execute(select(func.count()).select_from(bounded)).scalar() or 0
                total = n if n <= TOTAL_BOUND else None
        included = includes(self, q, [row.pk for row in rows], matches) if q.includes else []
        return SearchResult(matches, included, total, next_cursor, has_more)

    def _fast_token_search(self, q: SearchQuery) -> SearchResult | None:
        """Identifier-style lookups (conditional create/update, HL7v2 matching) as prepared SQL strings.

        Building SQLAlchemy expressions costs about a millisecond; these lookups run for every entry of
        every message, so the common shape skips it. Same semantics as the general path. Each criterion's
        keys come from its own index lookup and the rows by primary key, in separate statements: as one
        ``pk IN (...) ORDER BY pk LIMIT n`` PostgreSQL, without statistics yet (a new database, the first
        minute of a feed), walked the whole primary key instead (20 ms per lookup on a few thousand rows).
        On PostgreSQL a lone criterion (the usual conditional write) is one round trip, ``_FAST_ONE_PG``,
        whose only plan is the same two index lookups.
        """
        if (q.sort or q.includes or q.cursor or q.offset or q.summary_count or q.total not in ("none", "default")
                or not q.resource_types or len(q.resource_types) != 1 or not q.criteria or q.count > 50):
            return None
        # driver SQL (the DBAPI's own statement cache; no SQLAlchemy compile per lookup)
        sqlite = self.conn.dialect.name == "sqlite"
        mark = param_mark(sqlite)
        lookups: list[tuple[str, list[Any]]] = []
        for c in q.criteria:
            if c.kind != "param" or c.param is None or c.param.type != "token" or c.modifier:
                return None
            if self.shared.of(c.resource_type, c.param).covered_by:
                return None  # also searched under the covering parameters: the general path
            ors: list[str] = []
            params: list[Any] = []
            sid = str(identity(c.resource_type, c.param.code))
            for raw in c.values:
                parts = escape_split(raw, "|")
                if len(parts) == 2 and parts[1]:  # ix_token_code: the code's hash, then system|code's
                    params += [h64(sid, parts[1]), h64(sid, parts[0], parts[1])]
                    ors.append(f"(hash_value = {mark} AND hash_sys_value = {mark})")
                elif len(parts) == 1:
                    params.append(h64(sid, parts[0]))
                    ors.append(f"hash_value = {mark}")
                else:
                    return None
            lookups.append((f"SELECT res_pk FROM idx_token WHERE {' OR '.join(ors)} LIMIT {FAST_LOOKUP_MAX + 1}",
                            params))
        rt = q.resource_types[0]
        if not sqlite and len(lookups) == 1:
            joined = driver_rows(self.conn, _FAST_ONE_PG.format(keys=lookups[0][0]), tuple(lookups[0][1]))
            if joined[0].n_keys > FAST_LOOKUP_MAX:
                return None  # a common value: the general path drives by the most selective criterion
            return self._fast_result(q, sorted((row for row in joined if row.pk is not None and row.res_type == rt
                                                and not row.deleted), key=lambda row: row.pk))
        keys: set[int] | None = None
        for sql, params in lookups:
            found = [row[0] for row in driver_rows(self.conn, sql, tuple(params))]
            if len(found) > FAST_LOOKUP_MAX:
                return None  # a common value: the general path drives by the most selective criterion
            keys = set(found) if keys is None else keys & set(found)
            if not keys:
                break
        rows: list[Any] = []
        if keys:
            rows = sorted(driver_rows(self.conn, _FAST_ROWS[sqlite], (list_param(sqlite, sorted(keys)), rt, False)),
                          key=lambda row: row.pk)
        return self._fast_result(q, rows)

    def _fast_result(self, q: SearchQuery, rows: list[Any]) -> SearchResult | None:
        if len(rows) > q.count:
            return None  # paging needed: let the general path build the cursor and total
        matches = [self.repo._row_to_stored(row) for row in rows]
        return SearchResult(matches, [], None if q.total == "none" else len(matches), None, False)

    def estimate(self, stmt: Select[Any]) -> int | None:
        if self.conn.dialect.name == "postgresql":
            sql = str(stmt.compile(self.conn, compile_kwargs={"literal_binds": True}))
            plan = self.conn.execute(text("EXPLAIN (FORMAT JSON) " + sql)).scalar()
            data = plan if isinstance(plan, list) else json.loads(str(plan))
            return int(data[0]["Plan"]["Plan Rows"])
        bounded = stmt.limit(10001).subquery()
        return self.conn.execute(select(func.count()).select_from(bounded)).scalar()

    # ------------------------------------------------------------------ criteria
    def pks_of(self, resource_type: str, crit: Criterion | None) -> Select[Any]:
        t = T.resource.alias()
        conds: list[Cond] = [t.c.res_type == resource_type, t.c.deleted.is_(False)]
        if crit is not None:
            conds.append(self.condition(crit, t))
        return select(t.c.pk).where(*conds)

    def ids_of(self, resource_type: str, crit: Criterion | None) -> Select[Any]:
        t = T.resource.alias()
        conds: list[Cond] = [t.c.res_type == resource_type, t.c.deleted.is_(False)]
        if crit is not None:
            conds.append(self.condition(crit, t))
        return select(t.c.fhir_id).where(*conds)

    def condition(self, c: Criterion, r: Any) -> Cond:
        kind = c.kind
        if kind == "or":
            if len(c.subs) > 1 and all(s.kind == "compartment" and s.values == c.subs[0].values for s in c.subs):
                return self._compartment(c.subs, r)  # $everything, compartment search over many types
            if len(c.subs) > 1 and all(s.kind == "chain" and s.param is c.subs[0].param for s in c.subs):
                return self._chain_any_target(c.subs, r)  # subject.name: Patient or Location or ...
            return or_(*[self.condition(s, r) for s in c.subs]) if c.subs else false()
        if kind == "and":
            return and_(*[self.condition(s, r) for s in c.subs]) if c.subs else true()
        if kind == "type":
            return r.c.res_type.in_(c.values)
        if kind == "id":
            ids = [v for raw in c.values for v in escape_split(raw, ",")]
            cond: Cond = r.c.fhir_id.in_(ids)
            return not_(cond) if c.modifier == "not" else cond
        if kind == "lastUpdated":
            return or_(*[self._last_updated(v, r) for v in c.values])
        if kind in ("text", "content"):
            return self._fulltext(kind, c.values, r)
        if kind == "list":
            return or_(*[self._in_list(v, r) for v in c.values])
        if kind == "chain":
            return self._chain_any_target([c], r)
        if kind == "has":
            return self._has(c, r)
        if kind == "compartment":
            return self._compartment([c], r)
        if kind == "param":
            assert c.param is not None
            return self._param(c, r)
        raise bad_request(f"Unsupported search criterion {kind}")

    def _has(self, c: Criterion, r: Any) -> Cond:
        """Reverse chain. Driving from the referring side (``fhir_id IN`` the targets of the matching
        resources) is right when few resources match; for a common code it materialises every match, so
        above ``HAS_PROBE_ABOVE`` matches each candidate is probed instead (its referring resources, by the
        reference index, checked for the criterion) and the page fills after a few dozen candidates."""
        assert c.param is not None and c.target_type is not None
        ref = T.idx_reference
        ident = identity(c.target_type, c.param.code)
        if r is not self._probe_for:
            inner = self.pks_of(c.target_type, c.sub)
            if not self._more_than(inner, HAS_PROBE_ABOVE):
                return r.c.fhir_id.in_(select(ref.c.target_id).where(
                    ref.c.hash_identity == ident, ref.c.target_type == c.resource_type, ref.c.res_pk.in_(inner)))
        t = T.resource.alias()
        saved, self._probe_for = self._probe_for, t
        try:
            sub = self.condition(c.sub, t) if c.sub is not None else true()
        finally:
            self._probe_for = saved
        return exists(select(literal(1)).select_from(ref.join(t, t.c.pk == ref.c.res_pk)).where(
            ref.c.hash_identity == ident, ref.c.target_id == r.c.fhir_id, ref.c.target_type == c.resource_type,
            t.c.res_type == c.target_type, t.c.deleted.is_(False), sub))

    def _more_than(self, stmt: Select[Any] | CompoundSelect[Any], n: int) -> bool:
        bounded = stmt.limit(n + 1).subquery()
        return (self.conn.execute(select(func.count()).select_from(bounded)).scalar() or 0) > n

    def _chain_any_target(self, chains: list[Criterion], r: Any) -> Cond:
        """One reference lookup for a chain whose reference may point at several types: an OR of separate
        subqueries cannot drive a query on PostgreSQL (it scans every resource and probes both).

        That one lookup, an OR of per-type ``target_id IN (...)``, is no index range either: PostgreSQL walks
        the references in primary-key order testing each, which finds a page at once when the matches are
        dense and walks every reference when they are rare (240-480 ms at 1M resources). So there, while at
        most ``CHAIN_DRIVE_UP_TO`` references lead to the matched targets (one bounded count), each type is
        its own branch of a UNION ALL, one ``ix_ref_target`` range per target: the work follows the matches.
        SQLite plans the OR as one index range per branch already (the count would only cost it time)."""
        ref = T.idx_reference
        first = chains[0]
        assert first.param is not None
        ident = ref.c.hash_identity == identity(first.resource_type, first.param.code)
        ids = [(c.target_type or "", self.ids_of(c.target_type or "", c.sub)) for c in chains]
        if len(ids) > 1 and r is not self._probe_for and self.conn.dialect.name != "sqlite":
            branches = [select(ref.c.res_pk).where(ident, ref.c.target_type == rtype, ref.c.target_id.in_(found))
                        for rtype, found in ids]
            if not self._more_than(union_all(*branches), CHAIN_DRIVE_UP_TO):
                return r.c.pk.in_(union_all(*branches))
        targets = [and_(ref.c.target_type == rtype, ref.c.target_id.in_(found)) for rtype, found in ids]
        return self._member(r, ref, ident, or_(*targets))

    def _compartment(self, members: list[Criterion], r: Any) -> Cond:
        """Membership in one compartment for one or many types: a single lookup of the references to the
        compartment owner (one index range), filtered by the member types' parameter identities.

        When it drives the query and the owner itself is a member ($everything), owner and references are
        one ``pk IN (... UNION ALL ...)``: PostgreSQL cannot drive from an OR of an IN-subquery and a
        row predicate, and would walk the primary key from the start filtering every row.
        """
        ref = T.idx_reference
        ctype, cid = members[0].values[0].split("/", 1)
        hashes = [identity(m.resource_type, p.code) for m in members for p in m.params]
        with_owner = any(m.resource_type == ctype for m in members)
        ref_where = (ref.c.target_id == cid, ref.c.target_type == ctype, ref.c.hash_identity.in_(hashes))
        if hashes and with_owner and r is not self._probe_for:
            owner = T.resource.alias("owner")
            return r.c.pk.in_(union_all(
                select(ref.c.res_pk).where(*ref_where),
                select(owner.c.pk).where(owner.c.res_type == ctype, owner.c.fhir_id == cid)))
        conds: list[Cond] = []
        if hashes:
            conds.append(self._member(r, ref, *ref_where))
        if with_owner:
            conds.append(and_(r.c.res_type == ctype, r.c.fhir_id == cid))
        return or_(*conds) if conds else false()

    def _param(self, c: Criterion, r: Any) -> Cond:
        sp = c.param
        assert sp is not None
        ident = identity(c.resource_type, sp.code)
        covered = self.shared.of(c.resource_type, sp).covered_by  # their rows stand for some of sp's
        table = T.INDEX_TABLES.get(sp.type) if sp.type != "composite" else T.idx_composite
        if c.modifier == "missing":
            if table is None:
                raise bad_request(f"':missing' is not supported on {sp.code}")
            want_missing = c.values[0].lower() == "true" if c.values else True
            idents = [ident, *[identity(c.resource_type, q.code) for q in covered]]
            present = exists(select(literal(1)).select_from(table).where(
                table.c.res_pk == r.c.pk, table.c.hash_identity.in_(idents)))
            return not_(present) if want_missing else present
        handler = getattr(self, f"_{sp.type}", None)
        if handler is None:
            raise bad_request(f"Search on parameter type {sp.type} ({sp.code}) is not supported")
        if c.modifier == "not" and sp.type == "token":
            positive = Criterion("param", c.resource_type, sp, None, c.values, value_set_codes=None)
            return not_(self._shared(self._token, positive, ident, covered, r))
        if c.modifier in ("not-in",):
            positive = Criterion("param", c.resource_type, sp, "in", c.values, value_set_codes=c.value_set_codes)
            return not_(self._shared(self._token, positive, ident, covered, r))
        return self._shared(handler, c, ident, covered, r)

    @staticmethod
    def _shared(handler: Callable[[Criterion, int, Any], Cond], c: Criterion, ident: int,
                covered: tuple[SearchParam, ...], r: Any) -> Cond:
        """``c`` on its own rows (``ident``), or on the rows of a parameter that covers some of its branches."""
        own = handler(c, ident, r)
        if not covered:
            return own
        return or_(own, *[handler(replace(c, param=q), identity(c.resource_type, q.code), r) for q in covered])

    def _in_list(self, list_id: str, r: Any) -> Cond:
        ref, lst = T.idx_reference, T.resource.alias()
        return r.c.pk.in_(
            select(T.resource.c.pk).select_from(T.resource.join(ref, and_(
                ref.c.target_id == T.resource.c.fhir_id, ref.c.target_type == T.resource.c.res_type)))
            .where(ref.c.hash_identity == identity("List", "item"),
                   ref.c.res_pk.in_(select(lst.c.pk).where(lst.c.res_type == "List", lst.c.fhir_id == list_id))))
