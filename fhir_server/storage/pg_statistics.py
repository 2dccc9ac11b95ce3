"""PostgreSQL planner statistics kept current while a database grows fast (a new server's first feed).

PostgreSQL plans a statement with the table sizes it knows at that moment and keeps the plan: the
foreign-key check that every index row fires (``SELECT 1 FROM fhir_resource WHERE pk = $1 FOR KEY
SHARE``) and psycopg's prepared statements are planned once per connection. Planned while a table is
still a few pages long they scan it sequentially, and keep doing so as it grows, until an ANALYZE
invalidates them. Autovacuum only looks every minute (``autovacuum_naptime``). Measured: HL7v2 ingest
into a new database ran at 49 ms per message for its first thousand messages, 16 ms once the
tables had statistics. So a daemon thread, woken by commits, runs ``ANALYZE`` on each of the engine's
tables whose modifications since its last ANALYZE outnumber the rows it described then (at least
``MIN_CHANGED``): a doubling, so a growing database is analyzed a logarithmic number of times. ANALYZE
samples a bounded number of rows and takes a lock that never blocks reads or writes.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
MIN_CHANGED = 500

STALE_TABLES = """
SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname)
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema()
  AND s.n_mod_since_analyze >= %(min_changed)s
  AND s.n_mod_since_analyze > greatest(c.reltuples, 0)
ORDER BY s.relname
"""

_lock = threading.Lock()
_engines: dict[int, tuple[weakref.ref[Engine], threading.Event]] = {}
_thread: threading.Thread | None = None


def register(engine: Engine) -> None:
    """Watch ``engine`` until it is garbage-collected; its commits wake the thread."""
    global _thread
    dirty = threading.Event()

    @event.listens_for(engine, "commit")
    def _on_commit(_conn: Any) -> None:
        dirty.set()

    key = id(engine)
    with _lock:
        _engines[key] = (weakref.ref(engine, lambda _r: _forget(key)), dirty)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="pg-statistics", daemon=True)
            _thread.start()


def _forget(key: int) -> None:
    with _lock:
        _engines.pop(key, None)


def refresh(engine: Engine) -> list[str]:
    """ANALYZE the tables whose statistics are stale by the rule above; the names of those analyzed."""
    with engine.begin() as conn:
        stale = [r[0] for r in conn.exec_driver_sql(STALE_TABLES, {"min_changed": MIN_CHANGED}).all()]
        for table in stale:  # quote_ident'ed names from the catalog
            conn.exec_driver_sql(f"ANALYZE {table}")
    return stale


def _run() -> None:
    global _thread
    while True:
        time.sleep(INTERVAL_S)
        with _lock:
            watched = list(_engines.values())
            if not watched:
                _thread = None
                return
        for ref, dirty in watched:
            _refresh_if_dirty(ref, dirty)


def _refresh_if_dirty(ref: weakref.ref[Engine], dirty: threading.Event) -> None:
    """One engine's turn; its strong reference ends with this call, so the thread never keeps it alive."""
    engine = ref()
    if engine is None or not dirty.is_set():
        return
    dirty.clear()
    try:
        analyzed = refresh(engine)
        if analyzed:
            log.debug("analyzed %s", ", ".join(analyzed))
    except Exception as exc:  # noqa: BLE001 - a dropped database, a restart: the next commit retries
        log.debug("statistics refresh failed: %s", exc)
