"""Opening a SQLite file that another process is creating: the switch to WAL waits instead of failing.

Processes that start together on a new file (gunicorn workers, ``digitalfront mllp`` beside ``serve``) each
switch it to WAL; SQLite answers a connection that wants the switch while another holds the write lock with
SQLITE_BUSY at once, without its busy handler. CI saw one of four workers fail to start that way
(tests/integration/fhir_server/test_concurrent_start.py, 1 run in ~25)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from fhir_server.storage.engine import make_engine


def test_the_first_connection_waits_for_another_process_writing_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # still a rollback journal
    other.execute("CREATE TABLE t (a)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1  # it waited for the commit
    finally:
        release.join()
        engine.dispose()
        other.close()
