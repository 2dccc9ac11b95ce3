"""SQL conditions for one search parameter's values, by parameter type (string, token, reference, ...).

``SqlSearch`` (search_sql) assembles a query from criteria: chains, ``_has``, compartments, sorting and
paging; what one criterion on one parameter means against its index table lives here, with the prefix
rules (search.html) shared by dates, numbers and quantities. Each condition is ``pk IN (SELECT res_pk FROM
idx_* WHERE ...)`` (or a per-row probe when the query drives from elsewhere), so each hits one index.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, exists, false, func, literal, literal_column, not_, or_, select, text

from fhir_server.errors import bad_request
from fhir_server.search.extract import CANONICAL_MARK, REF_RE, identity
from fhir_server.search.query import Criterion
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
from fhir_server.storage.search_paging import Cond
from fhir_server.timeutil import now_us

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


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


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value


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


def date_condition(raw: str, lo_col: Any, hi_col: Any, invalid: Callable[[str], str]) -> Cond:
    """A ``[prefix]date`` search value against a stored range; ``ap`` allows 10% of the distance from now
    (at least a day), as search.html suggests."""
    prefix, v = split_prefix(raw)
    rng = date_range(v)
    if rng is None:
        raise bad_request(invalid(v))
    approx = max(abs(now_us() - rng[0]) // 10, 86_400_000_000) if prefix == "ap" else None
    return range_condition(prefix, lo_col, hi_col, rng[0], rng[1], approx)


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


class ValueConditions:
    """The per-type conditions of ``SqlSearch``: a parameter's values against its index table."""

    conn: Connection
    base_url: str

    _probe_for: Any = None

    def _member(self, r: Any, table: Any, *where: Any) -> Cond:
        """``r`` has an index row in ``table`` matching ``where``: as a driving IN, or as a per-row probe."""
        if r is self._probe_for:
            return exists(select(literal(1)).select_from(table).where(table.c.res_pk == r.c.pk, *where))
        return r.c.pk.in_(select(table.c.res_pk).where(*where))

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
        code = c.param.code  # type: ignore[union-attr]
        conds = [date_condition(raw, d.c.low, d.c.high, lambda v: f"Invalid date {v!r} for {code}")
                 for raw in c.values]
        return self._member(r, d, d.c.hash_identity == ident, or_(*conds))

    def _last_updated(self, raw: str, r: Any) -> Cond:
        return date_condition(raw, r.c.last_updated, r.c.last_updated + 1,
                              lambda v: f"Invalid _lastUpdated value {v!r}")

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
