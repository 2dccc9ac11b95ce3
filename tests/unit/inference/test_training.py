"""Retraining reproduces the shipped artifacts. Runs only where the 'train' extra is installed:
readmission needs scikit-learn/skl2onnx and the Synthea corpus (~10 s); imaging needs torch (a
1-epoch run, ~5 s, checks the export path and the configs, not the weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.registry import DEFAULT_ROOT

CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpora" / "synthea-r4"


def test_readmission_retraining_is_byte_identical(tmp_path):
    """``digitalfront models train readmission_risk`` rebuilds the shipped model byte for byte."""
    pytest.importorskip("skl2onnx", reason="needs the 'train' extra")
    if not CORPUS.is_dir():
        pytest.skip("needs ../shared/corpora/synthea-r4")
    from click.testing import CliRunner

    from inference.cli import models

    out = CliRunner().invoke(models, ["train", "readmission_risk", "--out", str(tmp_path), "--corpus", str(CORPUS)],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    metrics = json.loads(out.output.strip().splitlines()[-1])
    assert metrics["n_patients"] == 74 and metrics["auroc_cv5_grouped"] > 0.6
    shipped = DEFAULT_ROOT / "readmission_risk"
    for rel in ("1/model.onnx", "1/model.py", "config.pbtxt", "configs/gpu.pbtxt", "model_card.json"):
        assert (tmp_path / "readmission_risk" / rel).read_bytes() == (shipped / rel).read_bytes(), rel


def test_imaging_export_path_and_configs(tmp_path):
    pytest.importorskip("torch", reason="needs the 'train' extra (torch)")
    pytest.importorskip("onnx", reason="needs the 'train' extra (onnx)")
    from inference.inprocess import InProcessClient
    from inference.training.phantoms import dataset
    from inference.training.train_imaging import train

    train(tmp_path, epochs=1, n_train=256)
    shipped = DEFAULT_ROOT / "imaging_cnn"
    for rel in ("config.pbtxt", "configs/gpu.pbtxt", "configs/gpu_libtorch.pbtxt", "1/model.py"):
        assert (tmp_path / "imaging_cnn" / rel).read_bytes() == (shipped / rel).read_bytes(), rel
    x, _ = dataset(2, seed=5)
    out = InProcessClient(tmp_path).infer("imaging_cnn", {"image__0": x})["probabilities__0"]
    assert out.shape == (2, 2)
    import torch

    traced = torch.jit.load(str(tmp_path / "imaging_cnn" / "1" / "model.pt"))
    torch.testing.assert_close(traced(torch.from_numpy(x)).detach(), torch.from_numpy(out), rtol=1e-4, atol=1e-5)
