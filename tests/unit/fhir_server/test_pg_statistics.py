"""PostgreSQL statistics are refreshed in the background while tables grow (not only by autovacuum)."""

from __future__ import annotations

import gc
import time

from sqlalchemy import text

from fhir_server.storage import pg_statistics
from fhir_server.storage.engine import make_engine


def _reltuples(engine, table: str) -> float:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return float(conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table}).scalar())


def test_growing_table_is_analyzed_after_commit(pg_url: str) -> None:
    engine = make_engine(pg_url)
    with engine.begin() as conn:  # autovacuum off: only the keeper can analyze it
        conn.execute(text("CREATE TABLE grows (id integer PRIMARY KEY) WITH (autovacuum_enabled = false)"))
    assert _reltuples(engine, "grows") < 0  # never analyzed
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO grows SELECT generate_series(1, 3000)"))
    end = time.monotonic() + 15
    while time.monotonic() < end and _reltuples(engine, "grows") < 3000:
        time.sleep(0.2)
    assert _reltuples(engine, "grows") == 3000
    with engine.begin() as conn:  # a small change afterwards is not worth another ANALYZE
        conn.execute(text("INSERT INTO grows SELECT generate_series(3001, 3100)"))
    time.sleep(2 * pg_statistics.INTERVAL_S + 1)
    assert pg_statistics.refresh(engine) == []
    assert _reltuples(engine, "grows") == 3000
    engine.dispose()


def test_refresh_rule_is_a_doubling(pg_url: str) -> None:
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE small (id integer) WITH (autovacuum_enabled = false)"))
        conn.execute(text("CREATE TABLE big (id integer) WITH (autovacuum_enabled = false)"))
        conn.execute(text("INSERT INTO small SELECT generate_series(1, 100)"))
        conn.execute(text("INSERT INTO big SELECT generate_series(1, 4000)"))
    engine.dispose()  # a backend publishes its change counters on exit (else at most once a second)
    time.sleep(1.0)
    with engine.begin() as conn:  # after that, or the inserts still count as changes since the ANALYZE
        conn.execute(text("ANALYZE big"))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO big SELECT generate_series(1, 3000)"))  # grew, but not doubled
    engine.dispose()
    time.sleep(2 * pg_statistics.INTERVAL_S + 0.5)
    stale = pg_statistics.refresh(engine)
    assert "public.small" not in stale  # under MIN_CHANGED
    assert "public.big" not in stale and _reltuples(engine, "big") == 4000
    assert _reltuples(engine, "small") < 0
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO big SELECT generate_series(1, 2000)"))  # now more changes than rows
    engine.dispose()
    end = time.monotonic() + 15
    while time.monotonic() < end and _reltuples(engine, "big") != 9000:
        time.sleep(0.2)
    assert _reltuples(engine, "big") == 9000
    engine.dispose()


def test_engines_are_forgotten_when_collected(pg_url: str) -> None:
    engine = make_engine(pg_url)
    key = id(engine)
    assert key in pg_statistics._engines
    engine.dispose()
    del engine
    gc.collect()
    assert key not in pg_statistics._engines
