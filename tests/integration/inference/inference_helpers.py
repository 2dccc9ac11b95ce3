"""Helpers shared by the inference integration tests (a plain module: tests/ is not a package)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def dicom_file(name: str) -> bytes:
    return (TEST_FILES / name).read_bytes()


@dataclass
class Live:
    url: str
    app: Any

    @property
    def base(self) -> str:
        return self.url + "/fhir"


def build_app(services: Any) -> Any:
    """The FHIR core plus the inference plugin, wired as ``create_app`` wires each plugin."""
    from flask import Flask

    import inference.web
    from fhir_server.flask_adapter import init_fhir

    app = Flask("digitalfront-inference-test")
    app.extensions["digitalfront"] = services
    inference.web.init_app(app, services)
    init_fhir(app, services)
    return app


def serve(app: Any) -> tuple[Live, Callable[[], None]]:
    """A real threaded WSGI server on a free loopback port."""
    from werkzeug.serving import make_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Live(f"http://127.0.0.1:{port}", app), server.shutdown
