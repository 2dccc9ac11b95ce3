from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_hooks.client_jwt import generate_key
from tests.unit.cds_hooks.cds_memfhir import ServerThread
from tests.unit.cds_hooks.cds_testutil import CdsApp


@pytest.fixture(scope="session")
def es_key() -> Any:
    return generate_key("ES384", kid="es-1")


@pytest.fixture(scope="session")
def rs_key() -> Any:
    return generate_key("RS384", kid="rs-1")


@pytest.fixture
def cds(tmp_path: Path, es_key: Any, rs_key: Any) -> CdsApp:
    return CdsApp(tmp_path, es_key, rs_key)


@pytest.fixture
def make_cds(tmp_path: Path, es_key: Any, rs_key: Any) -> Any:
    def make(**kw: Any) -> CdsApp:
        return CdsApp(tmp_path, es_key, rs_key, **kw)
    return make


@pytest.fixture
def fhir_http() -> Iterator[Any]:
    servers: list[ServerThread] = []

    def start(app: Flask) -> ServerThread:
        s = ServerThread(app)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()
