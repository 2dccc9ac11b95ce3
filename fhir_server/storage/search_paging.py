"""Sorting and keyset paging: sort keys as correlated subqueries, cursors as (sort values..., pk)."""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.errors import bad_request
from fhir_server.search.extract import identity
from fhir_server.search.query import SearchQuery, SortKey
from fhir_server.search.shared_rows import SharedRows
from fhir_server.search.values import MAX_US, MIN_US
from fhir_server.storage import tables as T

Cond = ColumnElement[bool]


def sort_expr(key: SortKey, r: Any, shared: SharedRows) -> Any:
    if key.name == "_id":
        return r.c.fhir_id
    if key.name == "_lastUpdated":
        return r.c.last_updated
    sp = key.param
    assert sp is not None
    rt_ident = [identity(t, code) for t in sp.base
                for code in (sp.code, *[q.code for q in shared.of(t, sp).covered_by])]
    agg = func.max if key.descending else func.min
    sentinel: Any
    if sp.type == "date":
        d = T.idx_date
        col = d.c.high if key.descending else d.c.low
        sentinel = MIN_US if key.descending else MAX_US
        sub = select(agg(col)).where(d.c.res_pk == r.c.pk, d.c.hash_identity.in_(rt_ident))
    elif sp.type == "string":
        s = T.idx_string
        sentinel = "" if key.descending else "\uffff"
        sub = select(agg(s.c.value_norm)).where(s.c.res_pk == r.c.pk, s.c.hash_identity.in_(rt_ident))
    elif sp.type == "token":
        tk = T.idx_token
        sentinel = "" if key.descending else "\uffff"
        sub = select(agg(tk.c.value)).where(tk.c.res_pk == r.c.pk, tk.c.hash_identity.in_(rt_ident))
    elif sp.type in ("number", "quantity"):
        tbl = T.idx_number if sp.type == "number" else T.idx_quantity
        sentinel = -1e308 if key.descending else 1e308
        sub = select(agg(tbl.c.value)).where(tbl.c.res_pk == r.c.pk, tbl.c.hash_identity.in_(rt_ident))
    elif sp.type == "reference":
        ref = T.idx_reference
        sentinel = "" if key.descending else "\uffff"
        sub = select(agg(ref.c.target_id)).where(ref.c.res_pk == r.c.pk, ref.c.hash_identity.in_(rt_ident))
    elif sp.type == "uri":
        u = T.idx_uri
        sentinel = "" if key.descending else "\uffff"
        sub = select(agg(u.c.uri)).where(u.c.res_pk == r.c.pk, u.c.hash_identity.in_(rt_ident))
    else:
        raise bad_request(f"Cannot sort by {sp.type} parameter {sp.code}")
    return func.coalesce(sub.scalar_subquery(), sentinel)

def keyset(q: SearchQuery, cols: list[Any], r: Any) -> Cond:
    values = decode_cursor(q.cursor or "")
    if len(values) != len(cols) + 1:
        raise bad_request("The paging cursor does not belong to this search")
    *keys, last_pk = values
    # lexicographic (k1, k2, ..., pk) beyond the cursor, honouring each key's direction
    ors: list[Cond] = []
    for i in range(len(cols) + 1):
        eqs = [cols[j] == keys[j] for j in range(i)]
        if i < len(cols):
            cmp = cols[i] < keys[i] if q.sort[i].descending else cols[i] > keys[i]
        else:
            cmp = r.c.pk > last_pk
        ors.append(and_(*eqs, cmp))
    return or_(*ors)

def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise bad_request("Malformed paging cursor") from exc
    if not isinstance(data, list):
        raise bad_request("Malformed paging cursor")
    return data
