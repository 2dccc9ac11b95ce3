"""The deployment files parse and agree with the code (commands, probes, settings that exist)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from digitalfront.cli import cli

ROOT = Path(__file__).resolve().parents[3]


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_api_manifest_uses_real_commands_and_settings() -> None:
    manifests = docs(ROOT / "deployment" / "kubernetes" / "api.yaml")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests}
    assert ("Deployment", "digitalfront-api") in kinds and ("Service", "digitalfront-api") in kinds
    runner = CliRunner()
    for d in manifests:
        if d["kind"] in ("Deployment", "Job"):
            container = d["spec"]["template"]["spec"]["containers"][0]
            argv = container.get("args") or container.get("command")
            assert argv[0] == "digitalfront"
            # every subcommand and option in the manifests exists: --help on it succeeds
            words = [a for a in argv[1:] if not a.startswith("-")][:2]
            sub = [w for w in words if not w.replace(".", "").isdigit()]
            result = runner.invoke(cli, [*sub[:2], "--help"])
            assert result.exit_code == 0, (argv, result.output)
            for opt in (a for a in argv if a.startswith("--")):
                assert opt in result.output, (opt, argv)
    config = next(d for d in manifests if d["kind"] == "ConfigMap")["data"]
    readme = (ROOT / "README.md").read_text()
    for key in config:
        assert key in readme, f"{key} is not documented in README.md"


def test_compose_file_parses() -> None:
    compose = yaml.safe_load((ROOT / "deployment" / "docker-compose.yml").read_text())
    assert {"postgres", "api", "triton", "migrate"} <= set(compose["services"])
    assert "DIGITALFRONT_DATABASE_URL" in compose["services"]["migrate"]["environment"]
