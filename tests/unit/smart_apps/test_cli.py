"""``digitalfront smart`` commands against a real SQLite database."""

from __future__ import annotations

import json

from click.testing import CliRunner
from joserfc.jwk import RSAKey

from smart_apps.cli import DEMO_PASSWORD, smart


def test_add_client_user_and_demo(tmp_path):
    url = f"sqlite:///{tmp_path / 'var' / 'db.sqlite'}"
    runner = CliRunner()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [RSAKey.generate_key(2048).as_dict(private=False)]}))
    r = runner.invoke(smart, ["--database-url", url, "add-client", "--name", "Bulk", "--scope", "system/*.rs",
                              "--auth-method", "private_key_jwt", "--jwks-file", str(jwks)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["grant_types"] == ["client_credentials"]
    r = runner.invoke(smart, ["--database-url", url, "add-client", "--name", "Conf", "--scope", "patient/*.rs",
                              "--redirect-uri", "https://app/cb", "--auth-method", "client_secret_basic"])
    assert r.exit_code == 0 and len(json.loads(r.output)["client_secret"]) > 30
    r = runner.invoke(smart, ["--database-url", url, "add-client", "--name", "NoKeys", "--scope", "system/*.rs",
                              "--auth-method", "private_key_jwt"])
    assert r.exit_code != 0 and "jwks" in r.output
    r = runner.invoke(smart, ["--database-url", url, "add-user", "nurse", "--password", "pw", "--fhir-user", "Org/1"])
    assert r.exit_code != 0
    r = runner.invoke(smart, ["--database-url", url, "demo"])
    assert r.exit_code == 0 and DEMO_PASSWORD in r.output
    assert runner.invoke(smart, ["--database-url", url, "demo"]).exit_code == 0  # idempotent
    listed = runner.invoke(smart, ["--database-url", url, "list-clients"]).output
    assert "demo-app" in listed and "Bulk" in listed and "Conf" in listed
