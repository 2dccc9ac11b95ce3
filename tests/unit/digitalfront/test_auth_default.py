"""Authorization is on unless switched off, and switching it off is said loudly."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from digitalfront.config import Settings


def test_auth_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGITALFRONT_AUTH", raising=False)  # (the suite's conftest turns it off)
    assert Settings().auth is True
    monkeypatch.setenv("DIGITALFRONT_AUTH", "off")
    assert Settings().auth is False


@pytest.mark.parametrize("auth", [False, True])
def test_an_app_without_authorization_warns_at_start(tmp_path: Any, caplog: pytest.LogCaptureFixture,
                                                     auth: bool) -> None:
    from digitalfront.app import build_services, create_app

    services = build_services(Settings(database_url=f"sqlite:///{tmp_path}/a.db", auth=auth,
                                       extra={"terminology_autoload": "0"}))
    with caplog.at_level(logging.WARNING):
        app = create_app(services=services)
    warned = [r for r in caplog.records if "AUTHORIZATION IS OFF" in r.getMessage() and r.levelno == logging.WARNING]
    assert bool(warned) is (not auth)
    client = app.test_client()
    assert client.get("/fhir/Patient").status_code == (401 if auth else 200)
    services.engine.dispose()
