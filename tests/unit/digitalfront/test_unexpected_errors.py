"""A bug behind a non-FHIR route answers JSON (an OperationOutcome, or OAuth's ``server_error``), not
Flask's HTML error page, and is logged; the FHIR routes have their own last line of defence in the router."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def app(app_factory: Any) -> Any:
    return app_factory(auth=True, extra={"terminology_autoload": "0"})


def test_a_feature_route_that_fails_answers_an_operation_outcome(app: Any, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    registry = app.extensions["inference"]["registry"] if "inference" in app.extensions else None
    if registry is None:
        pytest.skip("the inference plugin is not installed")

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(registry, "list", broken)
    r = app.test_client().get("/inference/models")
    assert r.status_code == 500 and r.is_json, r.data[:200]
    assert r.get_json()["resourceType"] == "OperationOutcome" and b"secret detail" not in r.data
    assert "secret detail" in caplog.text  # logged for the operator
    assert app.test_client().get("/no/such/route").status_code == 404  # HTTP errors keep Flask's answer


def test_an_oauth_endpoint_that_fails_answers_server_error(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    smart = app.extensions["smart"]

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(smart.store, "add_client", broken)
    r = app.test_client().post("/oauth/register", json={"client_name": "x", "redirect_uris": ["http://127.0.0.1/cb"]})
    assert r.status_code == 500 and r.get_json()["error"] == "server_error" and b"secret detail" not in r.data
