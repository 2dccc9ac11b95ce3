"""SMART's JavaScript ``fhirclient`` in headless Chromium: an EHR launch from our EHR page and a
standalone launch, each reading the patient back.

Needs Debian's ``chromium`` (apt-get install chromium) and ``npm ci`` in tests/integration/smart/js.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).parent / "js"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (needed for the JS fhirclient browser tests)"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed: apt-get install chromium"),
    pytest.mark.skipif(not (JS / "node_modules" / "fhirclient" / "build" / "fhir-client.js").exists()
                       or not (JS / "node_modules" / "playwright-core").exists(),
                       reason="run `npm ci` in tests/integration/smart/js first"),
]


def run_browser(mode: str, server, username: str, password: str, patient: str) -> dict:
    proc = subprocess.run([NODE, "run.mjs", mode, server.url, username, password, patient], cwd=JS,  # type: ignore[list-item]
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CHROMIUM_PATH": CHROMIUM or ""})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"browser run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def test_js_fhirclient_standalone_launch(smart_server):
    result = run_browser("standalone", smart_server, "doc", "doc-pass", "f001")
    assert result.get("error") is None, result
    assert result["patient"] == "f001" and result["tokenPatient"] == "f001" and result["banner"] is True


def test_js_fhirclient_ehr_launch(smart_server):
    result = run_browser("ehr", smart_server, "doc", "doc-pass", "example")
    assert result.get("error") is None, result
    assert result["patient"] == "example" and result["family"] == "Chalmers" and result["banner"] is False
