"""Several server processes starting at the same moment on a new database (gunicorn workers, pods).

Before the schema lock (``fhir_server.storage.engine.create_tables``/``lock_schema``), two workers both
created the terminology, SMART, CDS Hooks and HL7v2 tables on a new PostgreSQL database: one failed with a
unique violation on ``pg_type`` and gunicorn stopped the whole server. Each process here builds the full
app (migrations included) right after a barrier releases them all.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import create_pg_database, drop_pg_database, pg_error

PROCESSES = 4


def _start(url: str, barrier: Any, results: Any) -> None:
    try:
        from digitalfront.app import create_app
        from digitalfront.config import Settings

        settings = Settings(database_url=url, auth=False, hl7_workers=0)
        settings.extra = {"terminology_autoload": "0"}
        barrier.wait(timeout=120)
        app = create_app(settings)
        status = app.test_client().get("/fhir/metadata").status_code
        app.extensions["digitalfront"].engine.dispose()
        results.put(("ok", status))
    except Exception:  # noqa: BLE001 - reported to the test
        results.put(("error", traceback.format_exc()))


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/new.db"
        return
    err = pg_error()
    if err:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {err}")
    name = create_pg_database()
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        drop_pg_database(name)


def test_processes_starting_together_on_a_new_database_all_start(new_database: str) -> None:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_start, args=(new_database, barrier, results)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert [o for o in outcomes if o[0] != "ok"] == []
    assert {o[1] for o in outcomes} == {200}
