"""Compiles a parsed ``SearchQuery`` to SQL over the index tables.

Every criterion becomes ``pk IN (SELECT res_pk FROM idx_* WHERE <hashed identity>)``
so each hits one index; chains and ``_has`` nest the same building blocks.
Paging is keyset-based (the cursor holds the last row's sort values and pk),
never a deep OFFSET.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
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
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    union_all,
)

from fhir_server.errors import bad_request
from fhir_server.search.extract import CANONICAL_MARK, REF_RE, identity
from fhir_server.search.query import Criterion, SearchQuery, SearchResult
from fhir_server.search.registry import SearchParam
from fhir_server.search.values import (
    UCUM_SYSTEM,
    date_range,
    escape_split,
    h64,
    normalize_string,
    number_range,
    split_unescaped_keep,
    ucum_canonical,
)
from fhir_server.storage import tables as T
from fhir_server.storage.engine import any_of, driver_rows, list_param, param_mark
from fhir_server.storage.search_includes import includes
from fhir_server.storage.search_paging import Cond, encode_cursor, keyset, sort_expr
from fhir_server.timeutil import now_us

if TYPE_CHECKING:
    from fhir_server.storage.repository import SqlFhirRepository

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
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


def _code_and_system(tk: Any, pairs: list[tuple[int, int]]) -> Cond:
    """Token rows with one of these (code hash, system|code hash) pairs, through ``ix_token_code`` alone.

    One pair is a seek on both index columns. For several, the code hashes drive the index and the
    system|code hashes are compared as an expression (``+ 0``), so that neither planner multiplies the two
    IN lists into one seek per combination (a value set of 300 codes would be 90,000 seeks).
    """
    if len(pairs) == 1:
        return and_(tk.c.hash_value == pairs[0][0], tk.c.hash_sys_value == pairs[0][1])
    return and_(tk.c.hash_value.in_(sorted({c for c, _ in pairs})),
                (tk.c.hash_sys_value + literal_column("0")).in_(sorted({k for _, k in pairs})))


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value


def _now_us() -> int:
    return now_us()


def range_condition(prefix: str, lo_col: Any, hi_col: Any, qlo: Any, qhi: Any, approx: Any = None) -> Cond:
    """Target range [lo_col, hi_col) against search range [qlo, qhi) per search.html prefixes."""
    eq = and_(lo_col >= qlo, hi_col <= qhi)
    if prefix == "eq":
        return eq
    if prefix == "ne":
        return not_(eq)
    if prefix == "gt":
        return hi_col > qhi
    if prefix == "lt":
        return lo_col < qlo
    if prefix == "ge":
        return or_(hi_col > qhi, eq)
    if prefix == "le":
        return or_(lo_col < qlo, eq)
    if prefix == "sa":
        return lo_col >= qhi
    if prefix == "eb":
        return hi_col <= qlo
    if prefix == "ap":
        delta = approx if approx is not None else 0
        return and_(lo_col < qhi + delta, hi_col > qlo - delta)
    raise bad_request(f"Unknown prefix {prefix!r}")


def point_condition(prefix: str, col: Any, value: float, lo: float, hi: float) -> Cond:
    """A stored number against a search number whose precision gives [lo, hi)."""
    if prefix == "eq":
        return and_(col >= lo, col < hi)
    if prefix == "ne":
        return or_(col < lo, col >= hi)
    if prefix in ("gt", "sa"):
        return col > value
    if prefix in ("lt", "eb"):
        return col < value
    if prefix == "ge":
        return col >= value
    if prefix == "le":
        return col <= value
    if prefix == "ap":
        d = abs(value) * 0.1 or 0.1
        return and_(col >= value - d, col <= value + d)
    raise bad_request(f"Unknown prefix {prefix!r}")


class SqlSearch:
    def __init__(self, repo: SqlFhirRepository, conn: Connection) -> None:
        self.repo = repo
        self.conn = conn
        self.base_url = (repo.extractor.base_url or "").rstrip("/")
        self.shared = repo.extractor.shared

    _probe_for: Any = None

    def _member(self, r: Any, table: Any, *where: Any) -> Cond:
        """``r`` has an index row in ``table`` matching ``where``: as a driving IN, or as a per-row probe."""
        if r is self._probe_for:
            return exists(select(literal(1)).select_from(table).where(table.c.res_pk == r.c.pk, *where))
        return r.c.pk.in_(select(table.c.res_pk).where(*where))

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

    # --- string
    def _string(self, c: Criterion, ident: int, r: Any) -> Cond:
        s = T.idx_string
        conds: list[Cond] = []
        for raw in c.values:
            v = escape_split(raw, "\x00")[0]
            if c.modifier == "exact":
                if len(v) < 200:  # then value_exact == v means the value is v, so its normalised form is known:
                    # the lookup goes through ix_string_norm (there is no index on value_exact)
                    conds.append(and_(s.c.value_norm == normalize_string(v)[:200], s.c.value_exact == v))
                else:
                    conds.append(s.c.value_exact == v[:200])
            elif c.modifier == "contains":
                conds.append(s.c.value_norm.like(f"%{_like_escape(normalize_string(v))}%", escape="\\"))
            elif c.modifier in (None, ""):
                norm = normalize_string(v)[:200]
                conds.append(s.c.value_norm.like(f"{_like_escape(norm)}%", escape="\\"))
            else:
                raise bad_request(f"Modifier :{c.modifier} is not valid on string parameter {c.param.code}")  # type: ignore[union-attr]
        return self._member(r, s, s.c.hash_identity == ident, or_(*conds))

    # --- token
    def _token(self, c: Criterion, ident: int, r: Any) -> Cond:
        tk = T.idx_token
        mod = c.modifier
        sid = str(ident)
        if mod == "text":
            s = T.idx_string
            text_ident = identity(c.resource_type, c.param.code + ":text")  # type: ignore[union-attr]
            words = [s.c.value_norm.like(f"{_like_escape(normalize_string(v))}%", escape="\\") for v in c.values]
            words += [s.c.value_norm.like(f"% {_like_escape(normalize_string(v))}%", escape="\\") for v in c.values]
            return self._member(r, s, s.c.hash_identity == text_ident, or_(*words))
        if mod == "of-type":
            type_ident = identity(c.resource_type, c.param.code + ":of-type")  # type: ignore[union-attr]
            keys = []
            for v in c.values:
                parts = escape_split(v, "|")
                if len(parts) != 3:
                    raise bad_request(":of-type needs system|code|value")
                keys.append(h64(str(type_ident), "|".join(parts)))
            return self._member(r, tk, tk.c.hash_value.in_(keys))  # both hashes are the key on these rows
        if mod in ("in", "below", "above"):
            codes = c.value_set_codes
            if codes is None:
                raise bad_request(f":{mod} needs the terminology service for {c.values}")
            sv = [(h64(sid, code), h64(sid, s or "", code)) for s, code in codes if s is not None]
            bare = [h64(sid, code) for s, code in codes if s is None]
            vs_conds: list[Cond] = []
            if sv:
                vs_conds.append(_code_and_system(tk, sv))
            if bare:
                vs_conds.append(tk.c.hash_value.in_(bare))
            if not vs_conds:
                return false()
            return self._member(r, tk, or_(*vs_conds))
        if mod not in (None, ""):
            raise bad_request(f"Modifier :{mod} is not valid on token parameter {c.param.code}")  # type: ignore[union-attr]
        sys_value: list[tuple[int, int]] = []
        value_only: list[int] = []
        systems: list[str] = []
        for raw in c.values:
            parts = escape_split(raw, "|")
            if len(parts) == 1:
                value_only.append(h64(sid, parts[0]))
            elif len(parts) == 2:
                system, code = parts
                if code == "":
                    systems.append(system)
                else:
                    sys_value.append((h64(sid, code), h64(sid, system, code)))
            else:
                raise bad_request(f"Malformed token value {raw!r}")
        conds: list[Cond] = []
        if sys_value:
            conds.append(self._member(r, tk, _code_and_system(tk, sys_value)))
        if value_only:
            conds.append(self._member(r, tk, tk.c.hash_value.in_(value_only)))
        if systems:
            conds.append(self._member(r, tk, tk.c.hash_identity == ident,
                                                                tk.c.system.in_(systems)))
        return or_(*conds) if conds else false()

    # --- reference
    def _reference(self, c: Criterion, ident: int, r: Any) -> Cond:
        ref = T.idx_reference
        mod = c.modifier
        if mod == "identifier":
            id_ident = identity(c.resource_type, c.param.code + ":identifier")  # type: ignore[union-attr]
            sub = Criterion("param", c.resource_type, c.param, None, c.values)
            return self._token(sub, id_ident, r)
        type_filter = mod if mod and mod[:1].isupper() else None
        if mod and not type_filter:
            raise bad_request(f"Modifier :{mod} is not valid on reference parameter {c.param.code}")  # type: ignore[union-attr]
        conds: list[Cond] = []
        for raw in c.values:
            v = escape_split(raw, "\x00")[0]
            if self.base_url and v.startswith(self.base_url + "/"):
                v = v[len(self.base_url) + 1:]
            m = REF_RE.match(v)
            if m and not m.group("base"):
                rtype, rid = m.group("type"), m.group("id")
                if type_filter and type_filter != rtype:
                    conds.append(false())
                    continue
                conds.append(and_(ref.c.target_id == rid, ref.c.target_type == rtype))
            elif m or "://" in v or v.startswith("urn:"):
                conds.append(ref.c.target_url == v)
            else:
                conds.append(and_(ref.c.target_id == v, ref.c.target_type == type_filter)
                             if type_filter else ref.c.target_id == v)
        return self._member(r, ref, ref.c.hash_identity == ident, or_(*conds))

    # --- date
    def _date(self, c: Criterion, ident: int, r: Any) -> Cond:
        d = T.idx_date
        conds: list[Cond] = []
        for raw in c.values:
            prefix, v = split_prefix(raw)
            rng = date_range(v)
            if rng is None:
                raise bad_request(f"Invalid date {v!r} for {c.param.code}")  # type: ignore[union-attr]
            approx = max(abs(_now_us() - rng[0]) // 10, 86_400_000_000) if prefix == "ap" else None
            conds.append(range_condition(prefix, d.c.low, d.c.high, rng[0], rng[1], approx))
        return self._member(r, d, d.c.hash_identity == ident, or_(*conds))

    def _last_updated(self, raw: str, r: Any) -> Cond:
        prefix, v = split_prefix(raw)
        rng = date_range(v)
        if rng is None:
            raise bad_request(f"Invalid _lastUpdated value {v!r}")
        approx = max(abs(_now_us() - rng[0]) // 10, 86_400_000_000) if prefix == "ap" else None
        return range_condition(prefix, r.c.last_updated, r.c.last_updated + 1, rng[0], rng[1], approx)

    # --- number
    def _number(self, c: Criterion, ident: int, r: Any) -> Cond:
        n = T.idx_number
        conds: list[Cond] = []
        for raw in c.values:
            prefix, v = split_prefix(raw)
            rng = number_range(v)
            if rng is None:
                raise bad_request(f"Invalid number {v!r} for {c.param.code}")  # type: ignore[union-attr]
            conds.append(point_condition(prefix, n.c.value, float(rng[0]), float(rng[1]), float(rng[2])))
        return self._member(r, n, n.c.hash_identity == ident, or_(*conds))

    # --- quantity
    def _quantity(self, c: Criterion, ident: int, r: Any) -> Cond:
        qt = T.idx_quantity
        conds: list[Cond] = []
        for raw in c.values:
            parts = escape_split(raw, "|")
            if len(parts) not in (1, 3):
                raise bad_request(f"Malformed quantity {raw!r}: use [prefix]value|system|code")
            prefix, v = split_prefix(parts[0])
            rng = number_range(v)
            if rng is None:
                raise bad_request(f"Invalid quantity number {v!r}")
            system, code = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
            canon = ucum_canonical(rng[0], code) if code and system in ("", "http://unitsofmeasure.org") else None
            if canon:
                factor = canon[0] / rng[0] if rng[0] != 0 else ucum_canonical(Decimal(1), code)[0]  # type: ignore[index]
                cond = and_(qt.c.canon_unit == canon[1],
                            point_condition(prefix, qt.c.canon_value, float(canon[0]),
                                            float(rng[1] * factor), float(rng[2] * factor)))
            else:
                cond = point_condition(prefix, qt.c.value, float(rng[0]), float(rng[1]), float(rng[2]))
                if code and system:
                    cond = and_(cond, qt.c.hash_units == h64(system, code))
                elif code:
                    cond = and_(cond, qt.c.hash_code == h64(code))
            conds.append(cond)
        return self._member(r, qt, qt.c.hash_identity == ident, or_(*conds))

    # --- uri
    def _uri(self, c: Criterion, ident: int, r: Any) -> Cond:
        u = T.idx_uri
        conds: list[Cond] = []
        for raw in c.values:
            v = escape_split(raw, "\x00")[0]
            if c.modifier == "below":
                conds.append(u.c.uri.like(f"{_like_escape(v)}%", escape="\\"))
            elif c.modifier == "above":
                prefixes = [v[:i] for i in range(1, len(v) + 1) if i == len(v) or v[i] == "/"]
                conds.append(u.c.uri.in_(prefixes))
            elif c.modifier in (None, ""):
                conds.append(u.c.uri == v)
            else:
                raise bad_request(f"Modifier :{c.modifier} is not valid on uri parameter")
        return self._member(r, u, u.c.hash_identity == ident, or_(*conds))

    # --- composite
    def _composite(self, c: Criterion, ident: int, r: Any) -> Cond:
        cp = T.idx_composite
        sp = c.param
        assert sp is not None
        if len(sp.components) != 2 or any(comp.param is None for comp in sp.components):
            raise bad_request(f"Composite parameter {sp.code} is not supported")
        c2type = sp.components[1].param.type  # type: ignore[union-attr]
        sid = str(ident)
        conds: list[Cond] = []
        for raw in c.values:
            pieces = split_unescaped_keep(raw, "$")
            if len(pieces) != 2:
                raise bad_request(f"Composite value {raw!r} must have two parts joined by '$'")
            first = escape_split(pieces[0], "|")
            c1 = (cp.c.c1_sys_value == h64(sid, first[0], first[1])) if len(first) == 2 else \
                (cp.c.c1_value == h64(sid, first[0]))
            second = pieces[1]
            if c2type == "token":
                p2 = escape_split(second, "|")
                c2 = (cp.c.c2_sys_value == h64(sid, p2[0], p2[1])) if len(p2) == 2 else \
                    (cp.c.c2_value == h64(sid, p2[0]))
            elif c2type == "quantity":
                p2 = escape_split(second, "|")
                prefix, v = split_prefix(p2[0])
                rng = number_range(v)
                if rng is None:
                    raise bad_request(f"Invalid quantity {second!r}")
                if len(p2) not in (1, 3):
                    raise bad_request(f"Malformed quantity {second!r}: use [prefix]value|system|code")
                unit_sys, unit = (p2[1], p2[2]) if len(p2) == 3 else ("", "")
                canon = ucum_canonical(Decimal(1), unit) if unit and unit_sys in ("", UCUM_SYSTEM) else None
                if canon:
                    f = canon[0]
                    c2 = and_(cp.c.c2_sys_value == CANONICAL_MARK, cp.c.c2_value == h64("canon", canon[1]),
                              point_condition(prefix, cp.c.c2_num, float(rng[0] * f), float(rng[1] * f),
                                              float(rng[2] * f)))
                else:
                    c2 = and_(cp.c.c2_sys_value.is_(None),
                              point_condition(prefix, cp.c.c2_num, float(rng[0]), float(rng[1]), float(rng[2])))
                    if unit:
                        c2 = and_(c2, cp.c.c2_units == h64(unit_sys, unit)) if unit_sys else \
                            and_(c2, cp.c.c2_value == h64(unit))
            elif c2type == "date":
                prefix, v = split_prefix(escape_split(second, "\x00")[0])
                rng2 = date_range(v)
                if rng2 is None:
                    raise bad_request(f"Invalid date {v!r}")
                c2 = range_condition(prefix, cp.c.c2_low, cp.c.c2_high, rng2[0], rng2[1])
            elif c2type == "string":
                c2 = cp.c.c2_sys_value == h64(normalize_string(escape_split(second, "\x00")[0]))
            else:
                raise bad_request(f"Composite parameter {sp.code} is not supported")
            conds.append(and_(c1, c2))
        return self._member(r, cp, cp.c.hash_identity == ident, or_(*conds))

    # --- special
    def _fulltext(self, kind: str, values: list[str], r: Any) -> Cond:
        col = "narrative" if kind == "text" else "content"
        conds: list[Cond] = []
        fts: list[str] = []
        for v in values:
            words = [w for w in "".join(ch if ch.isalnum() else " " for ch in v).split() if w]
            if not words:
                continue
            if self.conn.dialect.name == "postgresql":
                tsq = func.plainto_tsquery("simple", " ".join(words))
                tv = func.to_tsvector("simple", func.coalesce(getattr(T.idx_text.c, col), ""))
                conds.append(self._member(r, T.idx_text, tv.op("@@")(tsq)))
            else:
                fts.append("(" + " AND ".join(f'{col}:"{w}"' for w in words) + ")")
        if fts:  # one MATCH for all the ORed values (a second bound :m would clash)
            conds.append(r.c.pk.in_(select(text("rowid")).select_from(text("idx_text_fts"))
                                    .where(text("idx_text_fts MATCH :m").bindparams(m=" OR ".join(fts)))))
        return or_(*conds) if conds else false()

    def _in_list(self, list_id: str, r: Any) -> Cond:
        ref, lst = T.idx_reference, T.resource.alias()
        return r.c.pk.in_(
            select(T.resource.c.pk).select_from(T.resource.join(ref, and_(
                ref.c.target_id == T.resource.c.fhir_id, ref.c.target_type == T.resource.c.res_type)))
            .where(ref.c.hash_identity == identity("List", "item"),
                   ref.c.res_pk.in_(select(lst.c.pk).where(lst.c.res_type == "List", lst.c.fhir_id == list_id))))
