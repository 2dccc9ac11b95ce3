"""Engine creation with the settings each backend needs, and migrations on start."""

from __future__ import annotations

import logging
import random
import sqlite3
import sys
import time
import weakref
from collections import namedtuple
from collections.abc import Sequence
from contextlib import closing
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url

from fhir_server.storage import checkpoint, pg_statistics

log = logging.getLogger(__name__)


SQLITE_SYNCHRONOUS = ("FULL", "EXTRA", "NORMAL")


def make_engine(url: str, *, synchronous: str = "FULL", wait_s: float = 60.0, **kwargs: Any) -> Engine:
    """SQLite: WAL, foreign keys, explicit BEGIN (IMMEDIATE for writers). PostgreSQL: a pool, fresh statistics.

    ``synchronous`` (SQLite): FULL syncs the WAL at every commit, so what a client was told is stored (a
    201, an HL7v2 ACK) survives a power loss or an OS crash, as a PostgreSQL commit does. NORMAL survives
    a crash of the server process only: the last commits may roll back after a power loss.
    ``wait_s``: how long a statement waits for SQLite's write lock, and a request for a pooled connection,
    before giving up (answered 503, ``concurrency.unavailable_outcome``).
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        synchronous = synchronous.upper()
        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"SQLite synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}, "
                             f"not {synchronous!r}")
        db = u.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "timeout": wait_s}
        engine = create_engine(url, connect_args=connect_args, pool_size=kwargs.pop("pool_size", 16),
                               max_overflow=16, pool_use_lifo=True, pool_timeout=wait_s, **kwargs)
        file_db = bool(db) and db != ":memory:" and not str(db).startswith("file:")
        _sqlite_session_settings(engine, file_db, synchronous, wait_s)
        if file_db:
            path = str(db)
            checkpoint.register(path)
            weakref.finalize(engine, checkpoint.unregister, path)
            # the one connection write transactions use (``writer``); it waits as long as busy_timeout would
            w = create_engine(url, connect_args=connect_args, pool_size=1, max_overflow=0, pool_timeout=wait_s,
                              **kwargs)
            _sqlite_session_settings(w, file_db, synchronous, wait_s)
            _WRITERS[engine] = w
            event.listen(engine, "engine_disposed", lambda _engine: w.dispose())
        return engine

    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("", "psycopg2"):
        url = str(u.set(drivername="postgresql+psycopg"))
    engine = create_engine(url, pool_size=kwargs.pop("pool_size", 10), max_overflow=20, pool_pre_ping=True,
                           pool_timeout=wait_s,
                           json_serializer=_json_dumps, json_deserializer=orjson.loads, **kwargs)
    if u.get_backend_name() == "postgresql":
        pg_statistics.register(engine)
    return engine


_WRITERS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def writer(engine: Engine) -> Engine:
    """The engine for write transactions: for a SQLite file, one dedicated connection; else ``engine``.

    SQLite keeps a page cache per connection and empties all of it at the start of a transaction when
    another connection has written since. Writes spread over a pool therefore start cold every time and
    read their index pages back (above the 2 GB mmap cap, one ``pread`` each): at 1M resources, 10 read
    syscalls per resource written through the pool, 0.6 through one connection (bench/RESULTS.md).
    SQLite runs one writer at a time anyway, so a single connection costs no concurrency.
    """
    return _WRITERS.get(engine, engine)


def _sqlite_session_settings(engine: Engine, file_db: bool, synchronous: str, wait_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
        _switch_to_wal(cur, wait_s)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA synchronous={synchronous}")  # one of SQLITE_SYNCHRONOUS (checked)
        cur.execute("PRAGMA cache_size=-262144")  # up to 256 MB of pages per connection
        cur.execute("PRAGMA temp_store=MEMORY")
        # map the file: index pages via the OS cache. SQLite builds cap this silently (3.40.1 as shipped
        # here: MAX_MMAP_SIZE = 2 GB); beyond the cap pages go through pread and the page cache.
        cur.execute("PRAGMA mmap_size=68719476736")
        # checkpoints run in a background thread (storage/checkpoint.py); this is only a safety net
        cur.execute(f"PRAGMA wal_autocheckpoint={checkpoint.SAFETY_PAGES if file_db else 1000}")
        cur.execute(f"PRAGMA journal_size_limit={checkpoint.SIZE_LIMIT_BYTES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Explicit transactions (``engine.begin()``, ``conn.begin()``: how every package writes) take the
        # write lock up front, so a read lock is never upgraded mid-transaction (SQLite answers that
        # with an immediate SQLITE_BUSY). Implicit ones (``engine.connect()`` then reads) stay deferred:
        # in WAL mode they never wait for a writer, not even one in the same thread.
        opts = conn.get_execution_options()
        if opts.get("readonly") or (not opts.get("write") and _autobegin()):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def sqlite_busy(exc: BaseException | None) -> bool:
    """SQLite's answer when another connection holds the lock a statement needs (once busy_timeout has run
    out, or at once where waiting could deadlock)."""
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(_SQLITE_BUSY)


def _switch_to_wal(cur: Any, wait_s: float) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the lock.

    On a new file the switch needs the exclusive lock. Processes starting together (gunicorn workers, pods)
    each read the header under a shared lock and then ask for it: SQLite sees a deadlock and answers
    SQLITE_BUSY at once, without calling the busy handler (measured: 6 processes on a new file, 86 of 200
    rounds failed one of them with "database is locked"). Once the file is in WAL mode the pragma is a read.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not sqlite_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005 + random.random() * 0.02)  # noqa: S311 - jitter, not a secret


def _json_dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _autobegin() -> bool:
    """True when SQLAlchemy began this transaction implicitly (the first statement on ``connect()``)."""
    frame = sys._getframe(2)
    for _ in range(12):
        if frame is None:
            return False
        if frame.f_code.co_name == "_autobegin":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def optimize(engine: Engine) -> None:
    """Refresh the planner's statistics when they are missing or stale (run at start and after loads).

    SQLite has none until ANALYZE, and without them it may walk a whole resource type by ``res_type``
    instead of starting from a selective index: measured at 1M resources, a single-patient search took
    92 ms instead of 5 ms. ``PRAGMA optimize`` alone cannot be relied on: before SQLite 3.46 (Python
    bundles 3.40) it only looks at tables the same connection has queried. So: a bounded-sampling ANALYZE
    (``analysis_limit``: ~2 s at 1M resources) when ``fhir_resource`` has no statistics or has grown to
    more than twice the size they describe, else ``PRAGMA optimize``.
    """
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            analyzed = _sqlite_stats_stale(conn)
            if analyzed:
                conn.exec_driver_sql("ANALYZE")
            else:
                conn.exec_driver_sql("PRAGMA optimize=0x10002")
        if analyzed:
            # Connections that did the work before the ANALYZE stay slow for reads: measured after a 400k
            # load in one process, patient+code+date p95 17 ms on them, 1.7 ms on new connections of the
            # same process (bench/RESULTS.md). New statistics, new connections.
            engine.dispose()
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


def _sqlite_stats_stale(conn: Any) -> bool:
    if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
        return True
    row = conn.exec_driver_sql("SELECT stat FROM sqlite_stat1 WHERE tbl = 'fhir_resource' AND "
                               "idx = 'ix_resource_type_updated'").first()
    rows_now = conn.exec_driver_sql("SELECT max(pk) FROM fhir_resource").scalar() or 0
    described = int(str(row[0]).split()[0]) if row else 0
    return rows_now > 2 * described + 1000


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


SCHEMA_LOCK = 0x44465343  # "DFSC": the PostgreSQL advisory lock that serialises schema changes


def lock_schema(conn: Connection) -> None:
    """Hold the schema lock until ``conn``'s transaction ends: processes that start together (gunicorn
    workers, several pods on a new database) change the schema one at a time. On SQLite the transaction's
    ``BEGIN IMMEDIATE`` (``make_engine``) already does that."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """``metadata.create_all`` for a package's own tables, safe when several processes run it at once.

    Unlocked, two workers starting on a new PostgreSQL database both saw a table missing and both created
    it: one failed with a unique violation on ``pg_type`` and gunicorn stopped the server. An index added to
    a table after a database was created is created too (``create_all`` skips the tables that exist)."""
    with engine.begin() as conn:
        lock_schema(conn)
        metadata.create_all(conn)
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)


def any_of(sqlite: bool) -> str:
    """Driver SQL for "column is one of a list given as ONE parameter" (see ``list_param``): the statement text
    stays the same for every list length, so neither SQLAlchemy nor the driver compiles it again."""
    return "IN (SELECT value FROM json_each(?))" if sqlite else "= ANY(%s)"


def param_mark(sqlite: bool) -> str:
    """The DBAPI's placeholder in driver SQL: sqlite3 takes ``?``, psycopg ``%s``."""
    return "?" if sqlite else "%s"


def list_param(sqlite: bool, values: list[Any]) -> Any:
    return orjson.dumps(values).decode() if sqlite else values


def driver_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """The rows of a driver-SQL SELECT on ``conn``'s DBAPI connection (inside its transaction, if any), with
    attribute access by column name. For the per-entry lookups of the write path: SQLAlchemy's execution
    context and result set-up cost more than SQLite running such a statement."""
    with closing(conn.connection.driver_connection.cursor()) as cur:  # type: ignore[union-attr]
        cur.execute(sql, params)
        row = _row_class(tuple(d[0] for d in cur.description))
        return [row._make(r) for r in cur.fetchall()]


def driver_execute(conn: Connection, sql: str, params: Sequence[Any]) -> None:
    """A driver-SQL statement that returns no rows, on ``conn``'s DBAPI connection (inside its transaction):
    for the write path's per-message statements, as ``driver_rows`` is for its lookups."""
    with closing(conn.connection.driver_connection.cursor()) as cur:  # type: ignore[union-attr]
        cur.execute(sql, params)


@lru_cache(maxsize=64)
def _row_class(columns: tuple[str, ...]) -> Any:
    return namedtuple("DriverRow", columns)  # type: ignore[misc]  # one class per statement shape
