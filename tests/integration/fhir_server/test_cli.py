"""The command line for real: `digitalfront db upgrade`, `load` and `serve` under gunicorn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import ROOT, free_port, shared_path

CLI = [sys.executable, "-m", "digitalfront"]


def run(args: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_upgrade_load_and_serve(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    env = {**os.environ, "DIGITALFRONT_DATABASE_URL": db, "DIGITALFRONT_AUTH": "off",
           "DIGITALFRONT_TERMINOLOGY_AUTOLOAD": "0"}
    up = run(["db", "upgrade"], env)
    assert up.returncode == 0, up.stderr

    bundle = sorted(shared_path("corpora", "synthea-r4").glob("*.json.gz"))[0]
    ndjson = tmp_path / "pats.ndjson"
    ndjson.write_text('{"resourceType":"Patient","id":"nd1"}\n{"resourceType":"Patient","gender":"robot"}\nnot json\n')
    loaded = run(["load", str(bundle), str(ndjson)], env)
    assert loaded.returncode == 0, loaded.stderr
    assert "failed" in loaded.stdout and "Patient:" in loaded.stdout
    assert "FAILED" in loaded.stdout  # the bad lines are reported with reasons, the good ones loaded

    port = free_port()
    proc = subprocess.Popen(CLI + ["serve", "--port", str(port), "--workers", "2"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        for _ in range(120):
            try:
                if requests.get(f"{base}/metadata", timeout=10).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.5)
        else:
            raise AssertionError("server did not start")
        assert requests.get(f"{base}/Patient/nd1", timeout=10).status_code == 200
        found = requests.get(f"{base}/Patient?_count=1", timeout=10).json()
        assert found["total"] >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "gunicorn" in out.lower() or "Booting worker" in out
