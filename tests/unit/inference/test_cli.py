from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from inference.cli import _auroc, models
from inference.config import load_config


def test_list_json_and_text():
    runner = CliRunner()
    r = runner.invoke(models, ["list", "--json"])
    assert r.exit_code == 0, r.output
    assert {"imaging_cnn", "readmission_risk"} <= {m["name"] for m in json.loads(r.output)}
    r = runner.invoke(models, ["list"])
    assert "imaging_cnn  versions=1" in r.output and "[demo model]" in r.output


def test_export_flattened_gpu_repository(tmp_path):
    r = CliRunner().invoke(models, ["export", "--out", str(tmp_path), "--model", "imaging_cnn",
                                    "--flatten", "gpu"])
    assert r.exit_code == 0, r.output
    cfg = load_config(tmp_path / "imaging_cnn" / "config.pbtxt")
    assert cfg.platform == "onnxruntime_onnx" and cfg.instance_kind == "KIND_GPU"
    assert (tmp_path / "imaging_cnn" / "1" / "model.onnx").is_file()
    r = CliRunner().invoke(models, ["export", "--out", str(tmp_path), "--model", "nope"])
    assert r.exit_code != 0 and "unknown model" in r.output


def test_evaluate_imaging_in_process():
    r = CliRunner().invoke(models, ["evaluate", "imaging_cnn", "--samples", "64"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["backend"] == "inprocess" and out["n"] == 64 and out["auroc"] > 0.95


def test_auroc_matches_definition():
    import numpy as np

    assert _auroc(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 0])) == 1.0
    assert _auroc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    s, y = rng.random(200), rng.integers(0, 2, 200)
    assert _auroc(s, y) == pytest.approx(sklearn.roc_auc_score(y, s))
