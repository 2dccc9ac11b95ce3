"""What the ``digitalfront`` command line logs while it opens a database."""

from __future__ import annotations

import logging

from click.testing import CliRunner

from digitalfront.cli import cli


def test_a_command_logs_migration_steps_but_not_alembics_start_up_chatter(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DIGITALFRONT_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("DIGITALFRONT_AUTH", "off")
    caplog.set_level(logging.INFO)
    out = CliRunner().invoke(cli, ["hl7", "replay", "--status", "error"], catch_exceptions=False)
    assert out.exit_code == 0 and "nothing to replay" in out.output, out.output
    alembic = [r.getMessage() for r in caplog.records if r.name.startswith("alembic")]
    assert any(m.startswith("Running upgrade") for m in alembic), alembic  # a fresh database: steps are news
    assert not [m for m in alembic if "setup plugin" in m or m.startswith(("Context impl", "Will assume"))], alembic
