"""SQLAlchemy implementation of ``FhirRepository`` (SQLite and PostgreSQL).

Writes inside a unit of work are buffered and flushed with one executemany per
table (before any read in the same transaction, and at commit), so a Synthea
transaction bundle of hundreds of resources costs a handful of statements.
Events are published only after the transaction commits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, bindparam, delete, or_, select, text, update

from fhir_server.errors import OperationOutcomeError, conflict, gone, not_found, precondition_failed, unprocessable
from fhir_server.events import EventBus, ResourceChanged
from fhir_server.ids import new_id
from fhir_server.model import JsonDict
from fhir_server.repository import ConditionalCriteria, PartialStepWrite, StoredResource, WriteResult
from fhir_server.search.extract import Extractor, IndexRows
from fhir_server.search.query import SearchQuery, SearchResult
from fhir_server.search.registry import SearchParamRegistry, default_registry
from fhir_server.storage import concurrency
from fhir_server.storage import tables as T
from fhir_server.storage.engine import any_of, driver_rows, is_sqlite, list_param, param_mark, writer
from fhir_server.storage.jobs import JobStore
from fhir_server.storage.queries import ResourceQueries
from fhir_server.timeutil import from_us, instant, to_us

log = logging.getLogger(__name__)
def load_body(body: Any) -> JsonDict | None:
    """A stored body: JSON text (SQLite) or an already-decoded JSONB document (PostgreSQL)."""
    if body is None or body == "":
        return None
    if isinstance(body, dict):
        return body
    return orjson.loads(body)  # type: ignore[no-any-return]


def _dumps(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except TypeError as exc:  # e.g. an integer beyond 64 bits from an in-process caller
        raise unprocessable(f"The resource cannot be stored: {exc}") from exc


def _strip_meta(res: JsonDict) -> JsonDict:
    out = dict(res)
    meta = dict(out.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


@dataclass
class _Step:
    """An open ``savepoint`` step: its SQL SAVEPOINT, if it had to set one, and whether it wrote yet."""

    nested: Any = None
    ending: bool = False
    flushing: bool = False


@dataclass
class _Pending:
    """Buffered statements of one unit of work, flushed per table."""

    resources: list[tuple[Any, ...]] = field(default_factory=list)  # _RESOURCE_COLUMNS
    resource_updates: list[dict[str, Any]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)  # _HISTORY_COLUMNS
    index_deletes: list[int] = field(default_factory=list)
    index: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    text: list[tuple[int, str | None, str | None]] = field(default_factory=list)  # res_pk, narrative, content
    keys: set[tuple[str, str]] = field(default_factory=set)  # resources written since the last flush

    def __bool__(self) -> bool:
        return bool(self.resources or self.resource_updates or self.history or self.index_deletes
                    or self.text or any(self.index.values()))


def _index_target(kind: str) -> str:
    """``table (res_pk, columns...)``: what an index row insert (executemany or COPY) writes into."""
    return f"{T.INDEX_TABLES[kind].name} ({', '.join(('res_pk', *_INDEX_COLUMNS[kind]))})"


_READ_RAW = text("SELECT body, version, last_updated, deleted FROM fhir_resource WHERE res_type = :t AND fhir_id = :i")

# The current rows of a transaction's updates, all types in one statement: every (type, id) pair of the two
# lists is one probe of uq_resource_type_id (a handful of types, so a few dozen probes), and the pairs that
# were not asked for are dropped by the caller.
_PREFETCH = {sqlite: "SELECT pk, res_type, fhir_id, version, last_updated, deleted, body FROM fhir_resource "
                     f"WHERE res_type {any_of(sqlite)} AND fhir_id {any_of(sqlite)}"
             for sqlite in (True, False)}

_MAX_PK = "SELECT max(pk) AS max_pk FROM fhir_resource"  # SQLite's next pk, once per transaction

COPY_MIN_ROWS = 16  # below this, executemany's one round trip is as cheap as starting a COPY

# SQLite full text (_text, _content): the FTS5 table indexes idx_text's rows (external content) and is written
# here, once per flush, not by triggers on idx_text. Measured: with an AFTER INSERT trigger, ingest in a
# process that kept writing fell from 1,643 to 844 resources/s by 412k resources (and to ~530/s at 1M),
# while the same load with these explicit statements ran at 1,495/s at 412k (bench/RESULTS.md, search).
_FTS_INSERT = "INSERT INTO idx_text_fts (rowid, narrative, content) VALUES (?, ?, ?)"

# Resource, history and text rows go in as driver SQL with positional rows, like the index rows: through
# SQLAlchemy Core each row was a dict bound per column (and on PostgreSQL each body was parsed back into a
# document only to be serialized again); here PostgreSQL casts the JSON text itself.
_RESOURCE_COLUMNS = ("pk", "res_type", "fhir_id", "version", "last_updated", "deleted", "body")
_HISTORY_COLUMNS = ("res_pk", "version", "res_type", "fhir_id", "last_updated", "deleted", "method", "body")


def _row_insert(table: str, columns: tuple[str, ...], sqlite: bool) -> str:
    marks = [param_mark(sqlite)] * len(columns)
    if not sqlite and columns[-1] == "body":
        marks[-1] = "%s::jsonb"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)})"


_INSERT_RESOURCE = {sqlite: _row_insert("fhir_resource", _RESOURCE_COLUMNS, sqlite) for sqlite in (True, False)}
_INSERT_HISTORY = {sqlite: _row_insert("fhir_resource_history", _HISTORY_COLUMNS, sqlite) for sqlite in (True, False)}
_INSERT_TEXT = {sqlite: _row_insert("idx_text", ("res_pk", "narrative", "content"), sqlite) for sqlite in (True, False)}
_FTS_DELETE = text("INSERT INTO idx_text_fts (idx_text_fts, rowid, narrative, content) "
                   "SELECT 'delete', res_pk, narrative, content FROM idx_text WHERE res_pk IN :pks"
                   ).bindparams(bindparam("pks", expanding=True))
_INDEX_COLUMNS = {
    "string": ("hash_identity", "value_norm", "value_exact"),
    "token": ("hash_identity", "hash_sys_value", "hash_value", "system", "value"),
    "reference": ("hash_identity", "target_type", "target_id", "target_url"),
    "date": ("hash_identity", "low", "high"),
    "number": ("hash_identity", "value"),
    "quantity": ("hash_identity", "value", "hash_units", "hash_code", "canon_value", "canon_unit"),
    "uri": ("hash_identity", "uri"),
    "composite": ("hash_identity", "c1_sys_value", "c1_value", "c2_sys_value", "c2_value", "c2_num",
                  "c2_units", "c2_low", "c2_high"),
}
_INSERT_INDEX = {sqlite: {kind: _row_insert(T.INDEX_TABLES[kind].name, ("res_pk", *columns), sqlite)
                          for kind, columns in _INDEX_COLUMNS.items()} for sqlite in (True, False)}



class SqlFhirRepository(ResourceQueries, JobStore):
    """The repository; ``unit_of_work()`` returns a view bound to one transaction."""

    def __init__(self, engine: Engine, *, registry: SearchParamRegistry | None = None,
                 events: EventBus | None = None, base_url: str | None = None,
                 resource_types: frozenset[str] | None = None) -> None:
        self.engine = engine
        self.registry = registry or default_registry()
        self.extractor = Extractor(self.registry, base_url)
        self.events = events or EventBus()
        self.resource_types = resource_types or self.registry.resource_types
        self.sqlite = is_sqlite(engine)
        self._pk_lock = threading.Lock()
        self._pk_block: list[int] = []
        self._conn: Connection | None = None
        self._pending = _Pending()
        self._events: list[ResourceChanged] = []
        self._prefetched: dict[tuple[str, str], Any] = {}
        self._offered: dict[tuple[str, str], IndexRows] = {}
        self._step: _Step | None = None  # the open savepoint() step of this unit of work
        self._locked: set[int] = set()  # criteria lock keys this unit of work holds (PostgreSQL)

    @property
    def write_engine(self) -> Engine:
        """Where this repository's write transactions go (SQLite file: one connection; see ``writer``)."""
        return writer(self.engine)

    # ------------------------------------------------------------ transactions
    def _bound(self, conn: Connection) -> SqlFhirRepository:
        view = object.__new__(SqlFhirRepository)
        view.__dict__.update(self.__dict__)
        view._conn = conn
        view._pending = _Pending()
        view._events = []
        view._prefetched = {}
        view._offered = {}
        view._step = None
        view._locked = set()
        view._root = self  # type: ignore[attr-defined]
        return view

    @contextmanager
    def unit_of_work(self) -> Iterator[SqlFhirRepository]:
        if self._conn is not None:  # nested: share the outer transaction
            yield self
            return
        conn = self.write_engine.connect().execution_options(write=True)
        view = self._bound(conn)
        try:
            with conn.begin():
                yield view
                view._flush()
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is a lost race
            lost = concurrency.lost_race(exc)
            if lost is None:
                raise
            raise lost from exc
        finally:
            conn.close()
        for ev in view._events:
            self.events.publish(ev)

    def failure_outcome(self, exc: Exception) -> OperationOutcomeError | None:
        return concurrency.failure_outcome(exc)

    def lock_criteria(self, all_criteria: list[ConditionalCriteria]) -> None:
        """See ``FhirRepository.lock_criteria``: PostgreSQL advisory locks; on SQLite this transaction holds the
        write lock already (``BEGIN IMMEDIATE``)."""
        if self._conn is None:
            raise RuntimeError("lock_criteria needs a unit of work: the locks last until it ends")
        if not self.sqlite:
            concurrency.lock_criteria(self._conn, all_criteria, self._locked)

    @contextmanager
    def savepoint(self) -> Iterator[SqlFhirRepository]:
        """Inside a unit of work: a nested all-or-nothing step (e.g. one HL7v2 message of a group commit).

        On error the step's writes and events are discarded and the outer transaction goes on. The step's
        writes are buffered and go to the database when it ends, so a failing step usually has written
        nothing; a SQL SAVEPOINT is set only when the step has to write earlier (it reads what it wrote).
        That is worth it: SQLite copies every page a savepoint's writes touch into its statement journal,
        ~9% of an HL7v2 message. If the step's final write itself fails part-way (no savepoint under it),
        ``PartialStepWrite`` is raised and the caller must roll the whole unit of work back.
        """
        if self._conn is None:
            with self.unit_of_work() as uow:
                yield uow
            return
        self._flush()
        n_events = len(self._events)
        pk_state = getattr(self, "_sqlite_next", None)
        locked = set(self._locked)  # a rolled-back SAVEPOINT releases the locks taken under it
        step = _Step()
        self._step = step
        try:
            try:
                yield self
            finally:
                step.ending = True  # from here on, _flush writes without setting a savepoint
            self._flush()
        except BaseException as exc:
            self._pending = _Pending()
            self._offered.clear()
            del self._events[n_events:]
            self._sqlite_next = pk_state  # type: ignore[attr-defined]
            self._locked = locked
            self._step = None
            if step.nested is not None:
                step.nested.rollback()
            elif step.flushing:
                raise PartialStepWrite(f"a step's writes failed part-way: {exc}") from exc
            raise
        self._step = None
        if step.nested is not None:
            step.nested.commit()

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        if self._conn is not None:
            self._flush()
            yield self._conn
            return
        with self.engine.connect() as conn:
            yield conn.execution_options(readonly=True)

    @contextmanager
    def _writing(self) -> Iterator[SqlFhirRepository]:
        if self._conn is not None:
            yield self
        else:
            with self.unit_of_work() as uow:
                yield uow

    # ------------------------------------------------------------ keys
    def _next_pk(self, conn: Connection) -> int:
        if self.sqlite:
            # Writers hold the database lock (BEGIN IMMEDIATE), so max+1 is safe within the transaction.
            nxt: int | None = getattr(self, "_sqlite_next", None)
            if nxt is None:
                nxt = (driver_rows(conn, _MAX_PK, ())[0][0] or 0) + 1
            self._sqlite_next = nxt + 1  # type: ignore[attr-defined]
            return nxt
        root: SqlFhirRepository = getattr(self, "_root", self)
        with root._pk_lock:
            if not root._pk_block:
                rows = conn.execute(text("SELECT nextval('fhir_resource_pk_seq') FROM generate_series(1, 64)"))
                root._pk_block = [r[0] for r in rows]
            return root._pk_block.pop(0)

    # ------------------------------------------------------------ reads
    def _row_to_stored(self, row: Any) -> StoredResource:
        body = row.body
        res = load_body(body)
        return StoredResource(row.res_type, row.fhir_id, row.version, from_us(row.last_updated),
                              bool(row.deleted), res, getattr(row, "method", "PUT") or "PUT")

    def _current_row(self, conn: Connection, resource_type: str, id: str) -> Any:
        r = T.resource
        return conn.execute(select(r).where(r.c.res_type == resource_type, r.c.fhir_id == id)).first()

    def prefetch_current(self, keys: list[tuple[str, str]]) -> None:
        """Inside a unit of work: read the current rows of resources about to be updated in one query
        (a transaction of N updates then costs one SELECT instead of N)."""
        if self._conn is None or not keys:
            return
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            types = sorted({rt for rt, _ in chunk})
            ids = sorted({id for _, id in chunk})
            found = {(row.res_type, row.fhir_id): row for row in driver_rows(
                self._conn, _PREFETCH[self.sqlite], (list_param(self.sqlite, types), list_param(self.sqlite, ids)))}
            for key in chunk:
                self._prefetched[key] = found.get(key)

    def _current_row_for_write(self, rt: str, id: str) -> Any:
        assert self._conn is not None
        key = (rt, id)
        if key in self._pending.keys:  # written earlier in this transaction: make it visible first
            self._flush()
            self._prefetched.pop(key, None)
        elif key in self._prefetched:
            return self._prefetched.pop(key)  # one use: after this write the row is stale
        return self._current_row(self._conn, rt, id)

    def read(self, resource_type: str, id: str) -> StoredResource:
        with self._reading() as conn:
            row = self._current_row(conn, resource_type, id)
        if row is None:
            raise not_found(f"{resource_type}/{id} is not known")
        if row.deleted:
            raise gone(f"{resource_type}/{id} was deleted", headers={"ETag": f'W/"{row.version}"'})
        return self._row_to_stored(row)

    def read_raw(self, resource_type: str, id: str) -> tuple[str, int, int] | None:
        """(JSON text, version, lastUpdated µs) of the current version, or None; the fast read path.

        Outside a unit of work it uses a per-thread DBAPI connection in autocommit mode: a single SELECT
        needs no transaction, and skipping pool checkout and BEGIN/ROLLBACK halves the cost of a read.
        """
        if self._conn is not None:
            with self._reading() as conn:
                row = conn.execute(_READ_RAW, {"t": resource_type, "i": id}).first()
            if row is None or row.deleted:
                return None
            body = row.body if isinstance(row.body, str) else _dumps(row.body)
            return body, row.version, row.last_updated
        cur = self._thread_cursor()
        if self.sqlite:
            cur.execute("SELECT body, version, last_updated, deleted FROM fhir_resource "
                        "WHERE res_type = ? AND fhir_id = ?", (resource_type, id))
        else:
            cur.execute("SELECT body::text, version, last_updated, deleted FROM fhir_resource "
                        "WHERE res_type = %s AND fhir_id = %s", (resource_type, id))
        found = cur.fetchone()
        if found is None or found[3]:
            return None
        return found[0], found[1], found[2]

    def _thread_cursor(self) -> Any:
        root: SqlFhirRepository = getattr(self, "_root", self)
        local = root.__dict__.setdefault("_local", threading.local())
        cur = getattr(local, "cursor", None)
        if cur is None:
            # A connection of this thread's own, outside the pool (closed when the thread goes away).
            dialect = root.engine.dialect
            cargs, cparams = dialect.create_connect_args(root.engine.url)
            if self.sqlite:
                cparams.update(check_same_thread=False, timeout=60)
            dbapi = dialect.loaded_dbapi.connect(*cargs, **cparams)
            if self.sqlite:
                dbapi.isolation_level = None
                dbapi.execute("PRAGMA busy_timeout=60000")
            else:
                dbapi.autocommit = True
            local.dbapi = dbapi
            cur = local.cursor = dbapi.cursor()
        return cur

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource:
        h = T.history
        with self._reading() as conn:
            row = conn.execute(select(h).where(h.c.res_type == resource_type, h.c.fhir_id == id,
                                               h.c.version == version)).first()
        if row is None:
            raise not_found(f"{resource_type}/{id}/_history/{version} is not known")
        if row.deleted:
            raise gone(f"{resource_type}/{id}/_history/{version} is a deletion")
        return self._row_to_stored(row)

    def exists(self, resource_type: str, id: str) -> bool:
        r = T.resource
        with self._reading() as conn:
            row = conn.execute(select(r.c.deleted).where(r.c.res_type == resource_type,
                                                         r.c.fhir_id == id)).first()
        return row is not None and not row.deleted

    # ------------------------------------------------------------ writes
    def _stamp(self, resource: JsonDict, id: str, version: int, now_us: int) -> JsonDict:
        res = dict(resource)
        res["id"] = id
        meta = dict(res.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant(now_us)
        res["meta"] = meta
        # keep resourceType, id, meta first, as servers conventionally do
        ordered = {"resourceType": res.pop("resourceType"), "id": res.pop("id"), "meta": res.pop("meta")}
        ordered.update(res)
        return ordered

    def _now(self) -> int:
        return to_us(datetime.now(UTC))

    def offer_index(self, resource_type: str, id: str, rows: IndexRows | None) -> None:
        """Inside a unit of work: index rows already extracted (ahead of the transaction) for the next write
        of ``resource_type/id``; None withdraws the offer."""
        if rows is None:
            self._offered.pop((resource_type, id), None)
        else:
            self._offered[(resource_type, id)] = rows

    def _queue_index(self, pk: int, res: JsonDict) -> None:
        offered = self._offered.pop((res["resourceType"], res["id"]), None) if self._offered else None
        rows: IndexRows = offered if offered is not None else self.extractor.extract(res)
        p = self._pending
        for kind in _INDEX_COLUMNS:
            vals = getattr(rows, kind)
            if vals:
                p.index.setdefault(kind, []).extend((pk, *v) for v in vals)
        if rows.text or rows.content:
            p.text.append((pk, " ".join(rows.text)[:100000] or None, " ".join(rows.content)[:100000] or None))

    def create(self, resource: JsonDict, *, id: str | None = None) -> WriteResult:
        with self._writing() as uow:
            return uow._create(resource, id or new_id(), method="POST")

    def _create(self, resource: JsonDict, id: str, method: str, version: int = 1,
                pk: int | None = None) -> WriteResult:
        assert self._conn is not None
        rt = resource["resourceType"]
        now = self._now()
        res = self._stamp(resource, id, version, now)
        body = _dumps(res)
        if pk is None:
            pk = self._next_pk(self._conn)
            self._pending.resources.append((pk, rt, id, version, now, False, body))
        else:
            self._pending.resource_updates.append({"b_pk": pk, "version": version, "last_updated": now,
                                                   "deleted": False, "body": body})
        self._pending.history.append((pk, version, rt, id, now, False, method, body))
        self._pending.keys.add((rt, id))
        self._queue_index(pk, res)
        stored = StoredResource(rt, id, version, from_us(now), False, res, method)
        self._events.append(ResourceChanged("create" if version == 1 else "update", rt, id, version, res))
        return WriteResult(stored, created=True)

    def update(self, resource: JsonDict, *, if_match: int | None = None,
               allow_create: bool = True) -> WriteResult:
        with self._writing() as uow:
            return uow._update(resource, if_match=if_match, allow_create=allow_create)

    def _update(self, resource: JsonDict, *, if_match: int | None, allow_create: bool,
                method: str = "PUT") -> WriteResult:
        assert self._conn is not None
        rt, id = resource["resourceType"], resource["id"]
        row = self._current_row_for_write(rt, id)
        if row is None:
            if if_match is not None:
                raise precondition_failed(f"{rt}/{id} does not exist, so If-Match cannot match")
            if not allow_create:
                raise not_found(f"{rt}/{id} is not known")
            return self._create(resource, id, method=method)
        if if_match is not None and if_match != row.version:
            raise precondition_failed(f"Version conflict: If-Match W/\"{if_match}\" but current is "
                                      f"W/\"{row.version}\"")
        if not row.deleted and row.body:
            current = load_body(row.body) or {}
            if _strip_meta(current) == _strip_meta({**resource, "id": id}):
                stored = self._row_to_stored(row)
                return WriteResult(stored, created=False, changed=False)
        new_version = row.version + 1
        self._pending.index_deletes.append(row.pk)
        result = self._create(resource, id, method=method, version=new_version, pk=row.pk)
        result.created = bool(row.deleted)
        # optimistic guard against a concurrent writer on PostgreSQL (SQLite writers are serialized)
        self._pending.resource_updates[-1]["b_version"] = row.version
        return result

    def delete(self, resource_type: str, id: str, *, if_match: int | None = None) -> WriteResult | None:
        with self._writing() as uow:
            return uow._delete(resource_type, id, if_match)

    def _delete(self, rt: str, id: str, if_match: int | None) -> WriteResult | None:
        assert self._conn is not None
        row = self._current_row_for_write(rt, id)
        if row is None:
            return None
        if if_match is not None and if_match != row.version:
            raise precondition_failed(f"Version conflict: If-Match W/\"{if_match}\" but current is "
                                      f"W/\"{row.version}\"")
        if row.deleted:
            return WriteResult(self._row_to_stored(row), created=False, changed=False)
        now = self._now()
        version = row.version + 1
        self._pending.index_deletes.append(row.pk)
        self._pending.resource_updates.append({"b_pk": row.pk, "b_version": row.version, "version": version,
                                               "last_updated": now, "deleted": True, "body": None})
        self._pending.history.append((row.pk, version, rt, id, now, True, "DELETE", None))
        self._pending.keys.add((rt, id))
        stored = StoredResource(rt, id, version, from_us(now), True, None, "DELETE")
        self._events.append(ResourceChanged("delete", rt, id, version, None))
        return WriteResult(stored, created=False)

    def replace_meta(self, resource_type: str, id: str, change: Callable[[JsonDict], JsonDict]) -> StoredResource:
        with self._writing() as uow:
            return uow._replace_meta(resource_type, id, change)

    def _replace_meta(self, rt: str, id: str, change: Callable[[JsonDict], JsonDict]) -> StoredResource:
        assert self._conn is not None
        row = self._current_row_for_write(rt, id)
        if row is None:
            raise not_found(f"{rt}/{id} is not known")
        if row.deleted:
            raise gone(f"{rt}/{id} was deleted")
        res = load_body(row.body) or {}
        res = {**res, "meta": change(res)}
        body = _dumps(res)
        r, h = T.resource, T.history
        done = self._conn.execute(update(r).where(r.c.pk == row.pk, r.c.version == row.version).values(body=body))
        if done.rowcount != 1:
            raise conflict("The resource was changed by a concurrent request; retry")
        self._conn.execute(update(h).where(h.c.res_pk == row.pk, h.c.version == row.version).values(body=body))
        self._pending.index_deletes.append(row.pk)  # _tag, _profile, _security and _content follow the meta
        self._pending.keys.add((rt, id))
        self._queue_index(row.pk, res)
        return StoredResource(rt, id, row.version, from_us(row.last_updated), False, res, "PUT")

    def _insert_sql(self, kind: str) -> str:
        return _INSERT_INDEX[self.sqlite][kind]

    def _copy_rows(self, conn: Connection, kind: str, rows: list[tuple[Any, ...]]) -> None:
        driver = conn.connection.driver_connection  # psycopg, inside this same transaction
        assert driver is not None
        with driver.cursor() as cur, cur.copy(f"COPY {_index_target(kind)} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _flush(self) -> None:
        p = self._pending
        if not p or self._conn is None:
            return
        conn = self._conn
        step = self._step
        if step is not None:
            if not step.ending and step.nested is None:  # a step writing before its end: protect it
                step.nested = conn.begin_nested()
            step.flushing = True
        self._pending = _Pending()
        if p.index_deletes:
            if self.sqlite:  # FTS5 removes a row by the values it indexed: read them before they go
                conn.execute(_FTS_DELETE, {"pks": p.index_deletes})
            for tbl in (*T.INDEX_TABLES.values(), T.idx_text):
                conn.execute(delete(tbl).where(tbl.c.res_pk.in_(p.index_deletes)))
        # inserts go straight to the DBAPI cursor, inside the same transaction: they return nothing, and
        # SQLAlchemy's execution context and result set-up cost more than SQLite's own work for small flushes
        with closing(conn.connection.driver_connection.cursor()) as cur:  # type: ignore[union-attr]
            if p.resources:
                cur.executemany(_INSERT_RESOURCE[self.sqlite], p.resources)
            for upd in p.resource_updates:
                r = T.resource
                stmt = update(r).where(r.c.pk == upd["b_pk"])
                if "b_version" in upd:
                    stmt = stmt.where(r.c.version == upd["b_version"])
                res = conn.execute(stmt.values(version=upd["version"], last_updated=upd["last_updated"],
                                               deleted=upd["deleted"], body=upd["body"]))
                if res.rowcount != 1:
                    raise conflict("The resource was changed by a concurrent request; retry with its new version")
            if p.history:
                cur.executemany(_INSERT_HISTORY[self.sqlite], p.history)
            for kind, rows in p.index.items():
                if not rows:
                    continue
                if self.sqlite or len(rows) < COPY_MIN_ROWS:  # plain DBAPI executemany
                    cur.executemany(self._insert_sql(kind), rows)
                else:  # index rows are the bulk of every write: PostgreSQL's COPY is one statement for all
                    self._copy_rows(conn, kind, rows)
            if p.text:
                cur.executemany(_INSERT_TEXT[self.sqlite], p.text)
                if self.sqlite:
                    cur.executemany(_FTS_INSERT, p.text)

    # ------------------------------------------------------------ search
    def search(self, query: SearchQuery) -> SearchResult:
        from fhir_server.storage.search_sql import SqlSearch

        with self._reading() as conn:
            return SqlSearch(self, conn).run(query)

    def reindex(self, resource_types: list[str] | None, progress: Callable[[int], None] | None = None,
                batch: int = 200) -> int:
        """Re-extract index rows, in small transactions so reads and writes go on meanwhile."""
        r = T.resource
        last, done = 0, 0
        while True:
            with self.engine.connect().execution_options(readonly=True) as conn:
                stmt = select(r.c.pk, r.c.body).where(r.c.deleted.is_(False), r.c.pk > last)
                if resource_types:
                    stmt = stmt.where(r.c.res_type.in_(resource_types))
                rows = conn.execute(stmt.order_by(r.c.pk).limit(batch)).all()
            if not rows:
                return done
            with self.unit_of_work() as uow:
                for row in rows:
                    uow._pending.index_deletes.append(row.pk)
                    uow._queue_index(row.pk, load_body(row.body) or {})
            done += len(rows)
            last = rows[-1].pk
            if progress:
                progress(done)


def or_all(conds: list[Any]) -> Any:
    return or_(*conds) if conds else text("1=0")

