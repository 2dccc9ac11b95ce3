"""The bundled core terminology's background load at first start: writes go on meanwhile, and a loader
killed mid-load is taken over instead of leaving the core terminology unloaded for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, text

from fhir_server.storage.engine import make_engine
from terminology import loader
from terminology.service import TerminologyService

ROOT = Path(__file__).resolve().parents[3]
CORE_CODE_SYSTEMS = 1062  # in terminology/data/r4-core-terminology.ndjson.gz (docs/terminology.md)
GENDER_VS, GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender", "http://hl7.org/fhir/administrative-gender"


def _core_status(engine: Engine) -> tuple[str | None, int]:
    """The core package's status, and how many core code systems are committed so far."""
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM tx_package WHERE name = :n"), {"n": loader.CORE_NAME}).scalar()
        systems = conn.execute(text("SELECT count(*) FROM tx_code_system WHERE origin IS NULL")).scalar()
    return status, int(systems or 0)


def _wait(engine: Engine, done, timeout: float = 120.0) -> tuple[str | None, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = _core_status(engine)
        except Exception:  # noqa: BLE001 - the tables may not exist yet
            state = (None, 0)
        if done(state):
            return state
        time.sleep(0.01)
    raise AssertionError(f"the core load did not get there in {timeout} s: {state}")


def test_writes_go_on_while_the_core_terminology_loads(tmp_path, monkeypatch):
    # smaller commits than the default 200, and a load slowed to >= 5 s (2 ms a resource, between its reads of
    # the data), so the write comes mid-load whatever the machine's speed or load: on a busy CI machine the
    # test's own thread was once scheduled too late and found the load over
    monkeypatch.setattr(loader, "CORE_PER_COMMIT", 10)
    read_core = loader.iter_core_resources

    def slowed():
        for resource in read_core():
            time.sleep(0.002)
            yield resource

    monkeypatch.setattr(loader, "iter_core_resources", slowed)
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE client_write (n INTEGER)")
    svc = TerminologyService(engine)
    thread = svc.ensure_core(background=True)
    assert thread is not None
    _wait(engine, lambda s: s[1] > 0)  # its first commit is in
    with engine.begin() as conn:  # BEGIN IMMEDIATE: waits for the load's current commit, not the whole load
        conn.exec_driver_sql("INSERT INTO client_write VALUES (1)")
        # what the load had committed when the write got the database (not read after: it may be over by then)
        status = conn.execute(text("SELECT status FROM tx_package WHERE name = :n"), {"n": loader.CORE_NAME}).scalar()
        systems = conn.execute(text("SELECT count(*) FROM tx_code_system WHERE origin IS NULL")).scalar()
    assert status == "loading" and systems < CORE_CODE_SYSTEMS  # the load is not over: the write did not wait for it all
    thread.join(120)
    status, systems = _core_status(engine)
    assert status == "loaded" and systems == CORE_CODE_SYSTEMS
    assert svc.in_value_set(GENDER_VS, GENDER, "male") is True


def test_a_loader_killed_mid_load_is_taken_over(db_url, monkeypatch):
    url = db_url
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from fhir_server.storage.engine import make_engine\n"
        "from terminology.service import TerminologyService\n"
        f"TerminologyService(make_engine({url!r})).ensure_core(background=True)\n"
        "time.sleep(120)\n")], cwd=ROOT)
    engine = make_engine(url)
    try:
        _wait(engine, lambda s: s[0] == "loading" and s[1] > 0)  # claimed, and part of it committed
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    status, partial = _core_status(engine)
    assert status == "loading" and 0 < partial < CORE_CODE_SYSTEMS
    svc = TerminologyService(engine)
    assert svc.ensure_core() is None  # a fresh claim: its loader may well be alive
    assert svc.in_value_set(GENDER_VS, GENDER, "male") is None  # lenient while "loading"
    monkeypatch.setattr(loader, "CLAIM_STALE_S", 1.0)
    time.sleep(2.2)  # the dead loader's claim goes stale (times are kept to the second)
    assert loader.claim_is_stale(engine, loader.CORE_NAME, loader.CORE_VERSION)
    assert not svc.core_ready()  # noticing the stale claim, it takes it over and loads
    assert not loader.claim_is_stale(engine, loader.CORE_NAME, loader.CORE_VERSION)
    # the live loader renews its claim once per commit: with a 1 s lease, a slow commit would look like a
    # death and start a second, concurrent load
    monkeypatch.setattr(loader, "CLAIM_STALE_S", 60.0)
    deadline = time.monotonic() + 120
    while not svc.core_ready() and time.monotonic() < deadline:  # noticing the stale claim, it loads
        time.sleep(0.2)
    status, systems = _core_status(engine)
    assert status == "loaded" and systems == CORE_CODE_SYSTEMS  # the dead loader's part replaced, not doubled
    assert svc.in_value_set(GENDER_VS, GENDER, "male") is True
    assert svc.in_value_set(GENDER_VS, GENDER, "robot") is False
    engine.dispose()
