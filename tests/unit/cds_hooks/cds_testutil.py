"""Helpers shared by the CDS Hooks unit tests (imported by name: no clash with other conftests)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import create_engine

from cds_hooks.client_jwt import public_jwks, sign
from cds_hooks.web import init_app
from digitalfront.config import Settings
from tests.unit.cds_hooks.cds_memfhir import MemoryClient, MemoryFhir

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpora" / "fhir-test-cases" / "cdshooks"
ISS = "https://ehr.example.org"


@dataclass
class Core:
    """The subset of the app's ``services`` the CDS package uses."""

    settings: Settings
    engine: Any
    client: Any = None
    router: Any = None
    authenticator: Any = None
    extra: dict[str, Any] = field(default_factory=dict)



class CdsApp:
    def __init__(self, tmp: Path, es: Any, rs: Any, mem: MemoryFhir | None = None, services: Any = None,
                 **extra: str) -> None:
        self.mem = mem or MemoryFhir()
        self.es, self.rs = es, rs
        settings = Settings(database_url=f"sqlite:///{tmp}/cds.db",
                            extra={"cds_clients": json.dumps([{"iss": ISS, "jwks": public_jwks(es, rs)}]),
                                   **extra})
        self.core = Core(settings=settings, engine=create_engine(settings.database_url),
                         client=MemoryClient(self.mem))
        self.app = Flask("cds-test")
        self.runtime = init_app(self.app, self.core, services)
        self.http = self.app.test_client()
        self.base = "http://localhost"

    def token(self, path: str, key: Any = None, **kw: Any) -> str:
        return sign(key or self.es, ISS, self.base + path, **kw)

    def post(self, path: str, body: Any, key: Any = None, **kw: Any) -> Any:
        return self.http.post(path, json=body, headers={"Authorization": f"Bearer {self.token(path, key, **kw)}"})

    def get(self, path: str, key: Any = None) -> Any:
        return self.http.get(path, headers={"Authorization": f"Bearer {self.token(path, key)}"})




def corpus(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / name).read_text())


def iso(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="seconds")


def hook_request(hook: str, patient_id: str, **context: Any) -> dict[str, Any]:
    return {"hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "hook": hook,
            "context": {"userId": "Practitioner/example", "patientId": patient_id, **context}}
