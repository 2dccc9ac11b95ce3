"""``digitalfront serve --mllp-port``: a real server process (gunicorn + listener) takes MLLP and serves FHIR."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from interfaces.client import MllpClient, ack_code
from tests.integration.interfaces.test_group_commit import oru

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"port {port} did not open")


def wait_for_http(url: str, timeout: float = 180.0) -> None:
    """The port opens before a gunicorn worker has built the app (slow on a loaded machine): wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} not ready after {timeout} s")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def test_serve_with_mllp_port_acks_after_commit_and_serves_the_result(tmp_path):
    http_port, mllp_port, metrics_port = free_port(), free_port(), free_port()
    exe = REPO / ".venv" / "bin" / "digitalfront"
    cmd = [str(exe), "serve", "--port", str(http_port), "--mllp-port", str(mllp_port),
           "--database-url", f"sqlite:///{tmp_path}/serve.db", "--workers", "1", "--threads", "2"]
    env = {**os.environ, "DIGITALFRONT_AUTH": "off", "DIGITALFRONT_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO),
           "DIGITALFRONT_HL7_WORKERS": "auto",  # the server default: worker processes on a multi-core machine
           "DIGITALFRONT_MLLP_METRICS_PORT": str(metrics_port)}  # the listener's own /metrics, /healthz, /readyz
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(mllp_port, proc)
        with MllpClient("127.0.0.1", mllp_port, timeout=60) as c:
            acks = [c.send(oru(f"srv-{i}", mrn="4242"))[0] for i in range(3)]
        assert [ack_code(a) for a in acks] == ["AA", "AA", "AA"], acks
        wait_for_http(f"http://127.0.0.1:{metrics_port}/readyz")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as resp:
            metrics = set(resp.read().decode().splitlines())
        # the listener process's own counters: the API processes' /metrics never see these
        assert {'digitalfront_mllp_messages_total{ack="AA"} 3', "digitalfront_hl7v2_applied_total 3",
                'digitalfront_hl7v2_messages{status="processed"} 3'} <= metrics, metrics
        wait_for_port(http_port, proc)
        wait_for_http(f"http://127.0.0.1:{http_port}/healthz")
        base = f"http://127.0.0.1:{http_port}/fhir"
        reports = get_json(f"{base}/DiagnosticReport?subject:Patient.identifier=urn:oid:1.2.3|4242")
        assert reports.get("total", len(reports.get("entry", []))) == 3
        obs = get_json(f"{base}/Observation?subject:Patient.identifier=urn:oid:1.2.3|4242&_summary=count")
        assert obs["total"] == 36
        listed = get_json(f"http://127.0.0.1:{http_port}/hl7v2/messages?status=processed")["messages"]
        assert {m["controlId"] for m in listed} == {"srv-0", "srv-1", "srv-2"}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
