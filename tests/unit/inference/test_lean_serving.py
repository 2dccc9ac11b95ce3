"""Serving needs no heavy ML stack: with torch, scikit-learn and skl2onnx made unimportable (CI installs the
'train' extra, so their absence has to be simulated), the app starts and both shipped models answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PROGRAM = """
import sys
for name in ("torch", "sklearn", "skl2onnx"):
    sys.modules[name] = None  # any import of them now raises ImportError
import numpy as np
from digitalfront.app import build_services, create_app
from digitalfront.config import Settings
from inference.inprocess import InProcessClient

services = build_services(Settings(database_url=sys.argv[1], auth=False, extra={"terminology_autoload": "0"}))
app = create_app(services=services)
assert app.test_client().get("/inference/models").status_code == 200
client = InProcessClient()
risk = client.infer("readmission_risk", {"features": np.zeros((1, 22), np.float32)})["probabilities"]
scan = client.infer("imaging_cnn", {"image__0": np.zeros((1, 1, 64, 64), np.float32)})["probabilities__0"]
assert risk.shape == (1, 2) and scan.shape == (1, 2)
print("served without", sorted(k for k in ("torch", "sklearn", "skl2onnx") if sys.modules.get(k) is None))
"""


def test_the_app_and_the_models_serve_without_the_train_extra(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM, f"sqlite:///{tmp_path}/lean.db"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "served without ['skl2onnx', 'sklearn', 'torch']" in out.stdout
