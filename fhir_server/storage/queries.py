"""Read queries of the repository that need no unit of work: history, bulk reads, counts, meta in use.

A mixin of ``SqlFhirRepository`` (kept apart so the write path stays readable); it uses the repository's
``_reading`` connection (inside a unit of work: that transaction, after its pending writes are flushed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from fhir_server.model import JsonDict
from fhir_server.repository import HistoryPage, StoredResource
from fhir_server.storage import tables as T
from fhir_server.timeutil import to_us


class ResourceQueries:
    resource_types: frozenset[str]

    def _reading(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _row_to_stored(self, row: Any) -> StoredResource:
        raise NotImplementedError

    def _current_row(self, conn: Connection, resource_type: str, id: str) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------ history
    def history(self, resource_type: str | None, id: str | None, *, since: datetime | None,
                at: datetime | None, count: int, offset: int) -> HistoryPage:
        h = T.history
        conds = []
        if resource_type:
            conds.append(h.c.res_type == resource_type)
        if id:
            conds.append(h.c.fhir_id == id)
        if since is not None:
            conds.append(h.c.last_updated >= to_us(since))
        with self._reading() as conn:
            if at is not None:
                # the version current at `at`: latest version per resource with last_updated <= at
                sub = (select(h.c.res_pk, func.max(h.c.version).label("v"))
                       .where(and_(*conds, h.c.last_updated <= to_us(at))).group_by(h.c.res_pk).subquery())
                base = select(h).join(sub, and_(h.c.res_pk == sub.c.res_pk, h.c.version == sub.c.v))
            else:
                base = select(h).where(and_(*conds)) if conds else select(h)
            total = conn.execute(select(func.count()).select_from(base.subquery())).scalar()
            rows = conn.execute(base.order_by(h.c.last_updated.desc(), h.c.res_pk.desc(), h.c.version.desc())
                                .limit(count).offset(offset)).all()
        entries = [self._row_to_stored(r) for r in rows]
        nxt = offset + count if total is not None and offset + count < total else None
        return HistoryPage(entries, total, nxt)

    def resource_exists_ever(self, resource_type: str, id: str) -> bool:
        with self._reading() as conn:
            return self._current_row(conn, resource_type, id) is not None

    # ------------------------------------------------------------ bulk reads
    def iter_current(self, resource_types: list[str] | None = None,
                     since: datetime | None = None) -> Iterator[StoredResource]:
        r = T.resource
        last = 0
        while True:
            stmt = select(r).where(r.c.deleted.is_(False), r.c.pk > last)
            if resource_types:
                stmt = stmt.where(r.c.res_type.in_(resource_types))
            if since is not None:
                stmt = stmt.where(r.c.last_updated >= to_us(since))
            with self._reading() as conn:
                rows = conn.execute(stmt.order_by(r.c.pk).limit(1000)).all()
            if not rows:
                return
            for row in rows:
                yield self._row_to_stored(row)
            last = rows[-1].pk

    def count_by_type(self) -> dict[str, int]:
        r = T.resource
        with self._reading() as conn:
            rows = conn.execute(select(r.c.res_type, func.count()).where(r.c.deleted.is_(False))
                                .group_by(r.c.res_type)).all()
        return {t: n for t, n in rows}

    def meta_in_use(self, resource_types: list[str] | None) -> JsonDict:
        from fhir_server.storage.meta_sql import meta_in_use

        with self._reading() as conn:
            return meta_in_use(conn, resource_types or sorted(self.resource_types))

    def pk_of(self, resource_type: str, id: str) -> int | None:
        r = T.resource
        with self._reading() as conn:
            return conn.execute(select(r.c.pk).where(r.c.res_type == resource_type, r.c.fhir_id == id,
                                                     r.c.deleted.is_(False))).scalar()
