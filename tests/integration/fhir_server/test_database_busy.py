"""A database that is busy past the configured wait, or unreachable, answers 503 with Retry-After, not 500.

Nothing the client sent was wrong and nothing was written, so it may retry: another process holding SQLite's
write lock (``digitalfront mllp`` beside ``serve``, a CLI load), every pooled connection taken by slow
requests, PostgreSQL restarting. Each case here is made with the real database, over the real WSGI server.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import Engine, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fhir_server.storage.concurrency import RETRY_AFTER_S, unavailable_outcome
from tests.conftest import LiveServer, pg_error

WAIT_S = 0.5
QUIET = {"terminology_autoload": "0"}  # no background load taking connections meanwhile
PATIENT = {"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter"]}]}


def _assert_busy(resp: requests.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["Retry-After"] == str(RETRY_AFTER_S)
    issue = resp.json()["issue"][0]
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert issue["code"] == "transient"
    assert "retry" in issue["diagnostics"]


def test_a_write_while_another_process_holds_the_sqlite_write_lock(
        live_server_factory: Callable[..., LiveServer]) -> None:
    live = live_server_factory(db_wait_s=WAIT_S, extra=QUIET)
    other = sqlite3.connect(live.services.engine.url.database, isolation_level=None)  # e.g. a CLI load
    other.execute("BEGIN IMMEDIATE")
    try:
        _assert_busy(requests.post(f"{live.base}/Patient", json=PATIENT, timeout=30))
        found = requests.get(f"{live.base}/Patient", timeout=30)  # WAL readers never wait for the writer
        assert found.status_code == 200 and found.json()["total"] == 0  # nothing was written
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert requests.post(f"{live.base}/Patient", json=PATIENT, timeout=30).status_code == 201  # the retry


def _take_every_connection(engine: Engine, stack: ExitStack) -> None:
    while True:
        try:
            stack.enter_context(engine.connect())
        except PoolTimeout:
            return


def test_every_pooled_connection_taken(live_server_factory: Callable[..., LiveServer], db_url: str) -> None:
    live = live_server_factory(db_wait_s=WAIT_S, database_url=db_url, extra=QUIET)
    with ExitStack() as stack:
        _take_every_connection(live.services.engine, stack)
        _assert_busy(requests.get(f"{live.base}/Patient", timeout=30))  # the FHIR router's answer
        _assert_busy(requests.get(f"{live.url}/metrics", timeout=30))  # the app's, for every other route
    assert requests.get(f"{live.base}/Patient", timeout=30).status_code == 200


@pytest.fixture
def pg_conn() -> Iterator[Callable[[], psycopg.Connection[Any]]]:
    err = pg_error()
    if err:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {err}")
    opened: list[psycopg.Connection[Any]] = []

    def connect() -> psycopg.Connection[Any]:
        opened.append(psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True))
        return opened[-1]

    yield connect
    for c in opened:
        c.close()


def test_postgresql_errors_that_mean_retry_later(pg_conn: Callable[[], psycopg.Connection[Any]]) -> None:
    holder, waiter = pg_conn(), pg_conn()
    holder.execute("SELECT pg_advisory_lock(4242)")
    waiter.execute("SET lock_timeout = '100ms'")
    with pytest.raises(psycopg.OperationalError) as lock_wait:
        waiter.execute("SELECT pg_advisory_lock(4242)")
    assert lock_wait.value.sqlstate == "55P03"
    assert unavailable_outcome(lock_wait.value) is not None
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("host=127.0.0.1 port=1 user=postgres dbname=test", connect_timeout=2)
    outcome = unavailable_outcome(refused.value)
    assert outcome is not None and outcome.status == 503
    with pytest.raises(psycopg.Error) as bug:
        waiter.execute("SELEC 1")
    assert unavailable_outcome(bug.value) is None  # a bug stays a logged 500


def test_sqlite_errors_other_than_busy_stay_errors(tmp_path: Any) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    with pytest.raises(sqlite3.OperationalError) as missing:
        conn.execute("SELECT * FROM no_such_table")
    assert unavailable_outcome(missing.value) is None
    conn.close()


def test_the_wait_applies_to_sqlite_and_to_the_pool(services_factory: Callable[..., Any]) -> None:
    services = services_factory(db_wait_s=2.5)
    with services.engine.connect() as conn:
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 2500
    assert services.engine.pool.timeout() == 2.5
