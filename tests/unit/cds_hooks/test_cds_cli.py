"""The ``cds`` CLI group: keys and tokens that our own authenticator accepts, feedback counts."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import create_engine

from cds_hooks.auth import ClientAuthenticator, TrustedClient
from cds_hooks.cli import cds
from cds_hooks.store import CdsStore


def test_keygen_token_round_trip_and_feedback(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "key.json"
    r = runner.invoke(cds, ["keygen", "--alg", "RS384", "--kid", "k1", "--out", str(key)])
    assert r.exit_code == 0, r.output
    jwks = json.loads(r.output)
    aud = "http://localhost:8080/cds-services"
    r = runner.invoke(cds, ["token", "--key", str(key), "--iss", "https://ehr", "--aud", aud])
    assert r.exit_code == 0, r.output
    auth = ClientAuthenticator([TrustedClient("https://ehr", jwks=jwks)])
    assert auth.authenticate("Bearer " + r.output.strip(), [aud])["iss"] == "https://ehr"
    r = runner.invoke(cds, ["services"])
    assert "sepsis-early-warning" in r.output and "encounter-discharge" in r.output
    url = f"sqlite:///{tmp_path}/fb.db"
    CdsStore(create_engine(url)).add_feedback("svc", {"feedback": [
        {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-28T10:00:00Z"}]}, None)
    r = runner.invoke(cds, ["feedback", "--database-url", url])
    assert "svc" in r.output and "acceptance 100%" in r.output
