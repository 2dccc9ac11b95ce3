"""SQLite WAL checkpoints happen in the background, not in the committing writer."""

from __future__ import annotations

import gc
import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy import text

from fhir_server.storage import checkpoint
from fhir_server.storage.engine import make_engine


def _wait(pred, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_writer_commit_leaves_pages_to_the_background_checkpointer(tmp_path: Path) -> None:
    db = tmp_path / "ckpt.db"
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == checkpoint.SAFETY_PAGES
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE blob (id INTEGER PRIMARY KEY, data TEXT)"))
    base = os.path.getsize(db)
    payload = "x" * 4000
    with engine.begin() as conn:  # ~4 MB: far below the writers' own threshold, so only the thread copies it
        conn.execute(text("INSERT INTO blob (data) VALUES (:d)"), [{"d": payload} for _ in range(1000)])
    # (liveness, not speed: one thread serves every database of the process, and late in a full suite run it
    # may be busy syncing other tests' databases first)
    assert _wait(lambda: os.path.getsize(db) > base + 3_000_000, timeout=60), \
        "the WAL was never checkpointed into the file"
    with engine.connect() as conn:  # and the data is all there
        assert conn.execute(text("SELECT count(*) FROM blob")).scalar() == 1000
    engine.dispose()


def test_engines_unregister_when_collected(tmp_path: Path) -> None:
    db = str(tmp_path / "gone.db")
    engine = make_engine(f"sqlite:///{db}")
    assert os.path.abspath(db) in checkpoint._paths
    engine.dispose()
    del engine
    gc.collect()
    assert os.path.abspath(db) not in checkpoint._paths


def test_checkpoint_once_reports_frames(tmp_path: Path) -> None:
    db = tmp_path / "once.db"
    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    result = checkpoint.checkpoint_once(str(db))
    assert result is not None and result[0] == 0 and result[1] >= result[2] >= 0
    engine.dispose()


def test_optimize_analyzes_when_statistics_are_missing_or_stale(tmp_path: Path) -> None:
    """SQLite's planner needs statistics; `optimize` must create them, not rely on PRAGMA optimize."""
    from fhir_server.storage.engine import optimize
    from fhir_server.storage.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'stats.db'}")
    upgrade(engine)

    def described() -> int:
        with engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT stat FROM sqlite_stat1 WHERE tbl = 'fhir_resource' AND "
                                       "idx = 'ix_resource_type_updated'").first()
        return int(row[0].split()[0]) if row else 0

    def add(n: int, start: int) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO fhir_resource (pk, res_type, fhir_id, version, last_updated, deleted, body) "
                "VALUES (?, 'Patient', ?, 1, 0, 0, '{}')", [(start + i, f"p{start + i}") for i in range(n)])

    add(3000, 1)
    optimize(engine)
    first = described()
    assert 2400 <= first <= 3600  # bounded sampling (analysis_limit) estimates the row count
    add(500, 5000)  # grown, but not past twice what the statistics describe: left as is
    optimize(engine)
    assert described() == first
    add(6000, 10_000)
    optimize(engine)
    assert 7600 <= described() <= 11400
    engine.dispose()


def test_optimize_renews_pooled_connections_when_it_analyzes(tmp_path: Path) -> None:
    """After ANALYZE the pool starts over, so no connection keeps working from before the statistics."""
    from fhir_server.storage.engine import optimize

    engine = make_engine(f"sqlite:///{tmp_path / 'opt.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE fhir_resource (pk INTEGER PRIMARY KEY, res_type TEXT, last_updated INT)"))
        conn.execute(text("CREATE INDEX ix_resource_type_updated ON fhir_resource (res_type, last_updated)"))
    with engine.connect() as conn:
        before = conn.connection.dbapi_connection
    optimize(engine)  # no statistics yet: ANALYZE, then a fresh pool
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection is not before
        assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").scalar() == 1
        kept = conn.connection.dbapi_connection
    optimize(engine)  # statistics are current now: PRAGMA optimize only, the pool stays
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection is kept
    engine.dispose()


def _read_syscalls() -> int:
    """This thread's read syscalls so far (SQLite reads pages beyond its mmap window with pread)."""
    with open("/proc/thread-self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscr:"))


def test_writes_share_one_connection_whose_page_cache_survives(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """SQLite empties a connection's page cache when another connection wrote since its last transaction,
    so all writes go through one connection (``writer``), and the WAL rewind (RESTART) keeps that cache.
    The control step shows the cold case the design avoids: one write through another connection."""
    import pytest

    from fhir_server.storage.engine import writer

    if not os.path.exists("/proc/thread-self/io"):
        pytest.skip("needs Linux per-thread I/O counters")
    db = tmp_path / "warm.db"
    engine = make_engine(f"sqlite:///{db}")
    w = writer(engine)
    assert w is not engine and w.pool.size() == 1
    with w.connect() as conn:  # the pool's one connection: every page not in its cache is now a pread
        conn.exec_driver_sql("PRAGMA mmap_size=0")
    with w.begin() as conn:
        conn.execute(text("CREATE TABLE blob (id INTEGER PRIMARY KEY, data TEXT)"))
        conn.execute(text("INSERT INTO blob (data) VALUES (:d)"), [{"d": "x" * 3000} for _ in range(1500)])
    assert checkpoint.checkpoint_once(str(db)) is not None  # pages now in the file, as after any backlog

    changes = iter("abcdefghij")

    def change(conn, row: int) -> None:  # type: ignore[no-untyped-def]
        conn.execute(text("UPDATE blob SET data = :d WHERE id = :i"), {"d": next(changes) * 3000, "i": row})

    def write_reading_every_page() -> int:
        before = _read_syscalls()
        with w.begin() as conn:
            assert conn.execute(text("SELECT count(*), sum(length(data)) FROM blob")).one() == (1500, 4_500_000)
            change(conn, 1)
        return _read_syscalls() - before

    write_reading_every_page()  # may start cold
    assert write_reading_every_page() < 50, "the writer's page cache did not survive its own commit"
    with engine.begin() as other:  # control: a write through another connection...
        change(other, 2)
    assert write_reading_every_page() > 1000, "...makes SQLite drop the writer's cache"
    monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 0)
    busy, log, copied = checkpoint.checkpoint_once(str(db)) or (1, 0, 0)  # copies all, then RESTART
    assert busy == 0 and log == copied
    assert write_reading_every_page() < 50, "rewinding the WAL dropped the writer's page cache"
    with engine.connect() as conn:  # and the log was rewound: it holds only that last write's frames
        assert conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()[1] < 20
    engine.dispose()


def test_repository_and_message_store_write_through_the_writer_connection(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from fhir_server.storage.engine import writer
    from fhir_server.storage.repository import SqlFhirRepository
    from interfaces.service import pipeline_for

    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    with writer(engine).connect() as conn:
        the_writer = conn.connection.dbapi_connection
    repo = SqlFhirRepository(engine)
    assert repo.write_engine is writer(engine)
    for _ in range(2):
        with repo.unit_of_work() as uow:
            assert uow._conn is not None and uow._conn.connection.dbapi_connection is the_writer
    pipeline = pipeline_for(SimpleNamespace(engine=engine, repo=repo, router=object(), settings=None))
    with pipeline.store._writing(None) as conn:  # the HL7v2 message store writes there too
        assert conn.connection.dbapi_connection is the_writer
    engine.dispose()


def _wal_database(path: Path) -> sqlite3.Connection:
    """A WAL database this process's checkpointer does not watch, so only the test checkpoints it."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE blob (id INTEGER PRIMARY KEY, data TEXT)")
    return conn


def _age(wal: Path) -> None:
    """Date the WAL back past the settling time, as if nobody had written for a while."""
    past = time.time_ns() - 10 * checkpoint.SETTLED_NS
    os.utime(wal, ns=(past, past))


def test_a_commit_that_lands_during_a_checkpoint_is_copied_next_round(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "race.db"
    conn = _wal_database(db)
    _age(Path(f"{db}-wal"))
    base = os.path.getsize(db)
    real = checkpoint.checkpoint_once

    def racing(path: str):  # type: ignore[no-untyped-def]
        result = real(path)  # copies the CREATE TABLE ...
        conn.executemany("INSERT INTO blob (data) VALUES (?)", [("x" * 4000,) for _ in range(1000)])  # ... then this
        return result

    seen: dict[str, tuple[int, int]] = {}
    monkeypatch.setattr(checkpoint, "checkpoint_once", racing)
    checkpoint._visit(str(db), seen)
    monkeypatch.setattr(checkpoint, "checkpoint_once", real)
    assert os.path.getsize(db) < base + 3_000_000  # the rows are still only in the log
    checkpoint._visit(str(db), seen)
    assert os.path.getsize(db) > base + 3_000_000, "the commit made during the checkpoint was taken as copied"
    conn.close()


def test_an_unchanged_wal_is_skipped_only_once_its_stamp_has_settled(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "settle.db"
    conn = _wal_database(db)
    calls: list[str] = []
    real = checkpoint.checkpoint_once
    monkeypatch.setattr(checkpoint, "checkpoint_once", lambda path: calls.append(path) or real(path))
    seen: dict[str, tuple[int, int]] = {}
    checkpoint._visit(str(db), seen)
    checkpoint._visit(str(db), seen)  # just written: a later write in the same clock tick would keep the stamp
    assert len(calls) == 2
    _age(Path(f"{db}-wal"))
    checkpoint._visit(str(db), seen)
    checkpoint._visit(str(db), seen)  # settled and all copied: nothing to do until the WAL changes
    assert len(calls) == 3
    conn.execute("INSERT INTO blob (data) VALUES ('y')")
    checkpoint._visit(str(db), seen)
    assert len(calls) == 4
    conn.close()


def test_one_failing_database_does_not_stop_checkpoints_of_the_others(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bad, good = str(tmp_path / "bad.db"), tmp_path / "good.db"
    _wal_database(Path(bad)).execute("INSERT INTO blob (data) VALUES ('z')")
    real = checkpoint.checkpoint_once

    def failing(path: str):  # type: ignore[no-untyped-def]
        if path == bad:
            raise RuntimeError("unexpected")
        return real(path)

    monkeypatch.setattr(checkpoint, "checkpoint_once", failing)
    checkpoint.register(bad)
    engine = make_engine(f"sqlite:///{good}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE blob (id INTEGER PRIMARY KEY, data TEXT)"))
        base = os.path.getsize(good)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO blob (data) VALUES (:d)"), [{"d": "x" * 4000} for _ in range(1000)])
        assert _wait(lambda: os.path.getsize(good) > base + 3_000_000, timeout=60)
    finally:
        checkpoint.unregister(bad)
        engine.dispose()
