"""Shared fixtures: databases (SQLite and a fresh PostgreSQL database), apps and a live server."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PG_ADMIN_URL = os.environ.get("DIGITALFRONT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

os.environ.setdefault("DIGITALFRONT_AUTH", "off")
# Apps built by tests map HL7v2 in the writer's thread; the tests that run the worker processes (the server's
# default) ask for them (integration/interfaces: the sqlite-workers stack, the kill -9 and MLLP serve tests).
os.environ.setdefault("DIGITALFRONT_HL7_WORKERS", "0")


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is not available (tests read ../shared relative to the repo root)")
    return p


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001
        return str(exc)


_PG_ERROR: str | None | bool = False


def pg_error() -> str | None:
    global _PG_ERROR
    if _PG_ERROR is False:
        _PG_ERROR = _pg_reachable()
    return _PG_ERROR  # type: ignore[return-value]


def create_pg_database() -> str:
    import psycopg

    name = f"df_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name is generated above, never user input
    return name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards); skipped only if PostgreSQL is unreachable."""
    err = pg_error()
    if err:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {err}")
    name = create_pg_database()
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fhir.db"
    else:
        err = pg_error()
        if err:
            pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {err}")
        name = create_pg_database()
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        drop_pg_database(name)


@pytest.fixture
def services_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    from digitalfront.app import build_services
    from digitalfront.config import Settings

    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        s = Settings(database_url=f"sqlite:///{tmp_path}/fhir-{len(made)}.db", auth=False)
        for k, v in overrides.items():
            setattr(s, k, v)
        svc = build_services(s)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.engine.dispose()


@pytest.fixture
def services(services_factory: Callable[..., Any], db_url: str) -> Any:
    return services_factory(database_url=db_url)


@pytest.fixture
def sqlite_services(services_factory: Callable[..., Any]) -> Any:
    return services_factory()


@pytest.fixture
def app_factory(services_factory: Callable[..., Any]) -> Callable[..., Any]:
    from digitalfront.app import create_app

    def make(**overrides: Any) -> Any:
        return create_app(services=services_factory(**overrides))

    return make


@dataclass
class LiveServer:
    url: str
    app: Any

    @property
    def base(self) -> str:
        return self.url + "/fhir"

    @property
    def services(self) -> Any:
        return self.app.extensions["digitalfront"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_live_server(app: Any) -> tuple[LiveServer, Callable[[], None]]:
    """Serve ``app`` with a real threaded WSGI HTTP server on a free loopback port."""
    from werkzeug.serving import make_server

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return LiveServer(f"http://127.0.0.1:{port}", app), server.shutdown


@pytest.fixture
def live_server(app_factory: Callable[..., Any]) -> Iterator[LiveServer]:
    live, stop = start_live_server(app_factory())
    yield live
    stop()


@pytest.fixture
def live_server_factory(app_factory: Callable[..., Any]) -> Iterator[Callable[..., LiveServer]]:
    stops: list[Callable[[], None]] = []

    def make(**overrides: Any) -> LiveServer:
        live, stop = start_live_server(app_factory(**overrides))
        stops.append(stop)
        return live

    yield make
    for stop in stops:
        stop()
