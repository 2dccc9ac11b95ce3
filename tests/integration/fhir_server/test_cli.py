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


def test_load_a_folder_with_a_package_tarball_a_bundle_and_a_failing_transaction(tmp_path: Path) -> None:
    """``digitalfront load DIR``: a FHIR NPM package (built here from resources of the official examples
    package), a Synthea transaction .json.gz, and a transaction with one invalid entry, which loads nothing
    of itself (all or nothing) while the rest loads."""
    import gzip
    import io
    import json
    import shutil
    import tarfile

    from click.testing import CliRunner

    from digitalfront.app import build_services
    from digitalfront.cli import cli
    from digitalfront.config import Settings

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wanted = {"package/Patient-example.json", "package/Observation-example.json", "package/Organization-hl7.json"}
    with tarfile.open(shared_path("fhir-packages", "hl7.fhir.r4.examples-4.0.1.tgz"), "r:gz") as src, \
            tarfile.open(inbox / "mini-package.tgz", "w:gz") as dst:
        for member in src.getmembers():
            if member.name in wanted or member.name == "package/package.json":
                fh = src.extractfile(member)
                assert fh is not None
                data = fh.read()
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                dst.addfile(info, io.BytesIO(data))
    synthea = sorted(shared_path("corpora", "synthea-r4").glob("*.json.gz"))[0]
    shutil.copy(synthea, inbox / synthea.name)
    broken = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "tx-ok"}, "request": {"method": "PUT", "url": "Patient/tx-ok"}},
        {"resource": {"resourceType": "Patient", "gender": "robot"}, "request": {"method": "POST", "url": "Patient"}}]}
    (inbox / "broken.json").write_text(json.dumps(broken))
    db = f"sqlite:///{tmp_path}/load.db"
    out = CliRunner().invoke(cli, ["load", str(inbox), "--database-url", db], catch_exceptions=False,
                             env={"DIGITALFRONT_AUTH": "off", "DIGITALFRONT_TERMINOLOGY_AUTOLOAD": "0"})
    assert out.exit_code == 0, out.output
    assert "broken.json" in out.output and "FAILED" in out.output
    services = build_services(Settings(database_url=db, auth=False))
    client = services.client
    assert [p["id"] for p in client.search("Patient", {"_id": "example"})] == ["example"]  # from the package
    assert client.search("Observation", {"_id": "example"}) and client.search("Organization", {"_id": "hl7"})
    synthea_patients = [e["resource"] for e in json.loads(gzip.open(synthea).read())["entry"]
                        if e["resource"]["resourceType"] == "Patient"]
    assert len(client.search("Patient", {"family": synthea_patients[0]["name"][0]["family"]})) == 1
    assert client.search("Patient", {"_id": "tx-ok"}) == []  # its transaction failed as a whole


def _serve_until_ready(args: list[str], env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(CLI + args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    for _ in range(240):
        try:
            if requests.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=10).status_code == 200:
                return proc
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"server did not start: {proc.communicate(timeout=30)[0][-2000:]}")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=60)[0]


def test_serve_demo_loads_the_demo_data_once_and_prints_where_everything_is(tmp_path: Path) -> None:
    """What ``make serve`` runs: the first start on a new database loads the shipped demo data and creates the
    SMART demo app and users; a restart finds the data and loads nothing; the URLs use --host/--port."""
    env = {**{k: v for k, v in os.environ.items() if k != "DIGITALFRONT_AUTH"},  # (the suite turns auth off)
           "DIGITALFRONT_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db", "DIGITALFRONT_TERMINOLOGY_AUTOLOAD": "0"}
    port = free_port()
    args = ["serve", "--demo", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = _serve_until_ready(args, env, port)
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        assert requests.get(f"{base}/Patient", timeout=10).status_code == 401  # auth is on by default
    finally:
        first = _stop(proc)
    assert "First start: loading the demo data set" in first
    assert f"DigitalFront FHIR base:   http://127.0.0.1:{port}/fhir" in first
    assert "demo-patient" in first and "demo-app" in first  # the SMART demo client and users it printed
    from digitalfront.app import build_services
    from digitalfront.config import Settings

    services = build_services(Settings(database_url=env["DIGITALFRONT_DATABASE_URL"], auth=False))
    patients = services.repo.count_by_type()["Patient"]
    assert patients == 5  # the five Synthea patients of digitalfront/demo_data
    services.engine.dispose()
    proc = _serve_until_ready(args, env, port)
    again = _stop(proc)
    assert "First start" not in again and "demo-patient" in again
    services = build_services(Settings(database_url=env["DIGITALFRONT_DATABASE_URL"], auth=False))
    assert services.repo.count_by_type()["Patient"] == patients
