"""SQLite commits are synced (synchronous=FULL) unless configured otherwise: a 201 or an HL7v2 ACK survives
a power loss, as with PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitalfront.app import build_services
from digitalfront.config import Settings
from fhir_server.storage.engine import make_engine, writer
from interfaces.service import pipeline_for

LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _level(engine) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return LEVELS[conn.exec_driver_sql("PRAGMA synchronous").scalar()]


def test_server_writes_and_hl7_acks_are_synced_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGITALFRONT_SQLITE_SYNCHRONOUS", raising=False)
    services = build_services(Settings(database_url=f"sqlite:///{tmp_path / 'df.db'}", auth=False, hl7_workers=0))
    try:
        assert _level(services.engine) == "FULL"
        assert _level(writer(services.engine)) == "FULL"  # the connection every write transaction uses
        pipeline = pipeline_for(services)
        assert _level(pipeline.store.write_engine) == "FULL"  # where the message and its ACK state commit
        pipeline.close()
    finally:
        services.engine.dispose()


def test_normal_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITALFRONT_SQLITE_SYNCHRONOUS", "normal")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'df.db'}", auth=False)
    assert settings.sqlite_synchronous == "NORMAL"
    services = build_services(settings)
    try:
        assert _level(writer(services.engine)) == "NORMAL"
    finally:
        services.engine.dispose()


@pytest.mark.parametrize("level", ["OFF", "fast", "1; DROP TABLE x"])
def test_unsafe_or_unknown_levels_are_refused(tmp_path: Path, level: str) -> None:
    with pytest.raises(ValueError, match="FULL, EXTRA, NORMAL"):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}", synchronous=level)
