from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import pytest

from inference import get_model_client
from inference.client import InvalidInput, ModelClient, ModelNotFound
from inference.inprocess import InProcessClient
from inference.registry import DEFAULT_ROOT
from inference.training.phantoms import dataset


@pytest.fixture(scope="module")
def client():
    return InProcessClient(DEFAULT_ROOT)


def test_is_a_model_client_and_default_backend(client):
    assert isinstance(client, ModelClient)
    assert get_model_client(None).backend == "inprocess"
    assert client.ready() and client.ready("imaging_cnn") and client.ready("readmission_risk")
    assert not client.ready("nope")


def test_imaging_model_separates_fresh_phantoms(client):
    x, y = dataset(64, seed=123)  # a seed the training never used
    probs = client.infer("imaging_cnn", {"image__0": x[:32]})["probabilities__0"]
    probs = np.concatenate([probs, client.infer("imaging_cnn", {"image__0": x[32:]})["probabilities__0"]])
    assert probs.shape == (64, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = ((probs[:, 1] >= 0.5) == (y == 1)).mean()
    assert accuracy >= 0.9


def test_output_equals_bare_onnx_runtime(client):
    x, _ = dataset(4, seed=7)
    sess = ort.InferenceSession(str(DEFAULT_ROOT / "imaging_cnn" / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    (bare,) = sess.run(["probabilities__0"], {"image__0": x})
    np.testing.assert_array_equal(client.infer("imaging_cnn", {"image__0": x})["probabilities__0"], bare)


def test_python_backend_model_runs_in_process_through_the_shim(tmp_path):
    """The same model.py Triton runs, executed in-process (onnx_file removed from the config)."""
    root = tmp_path / "repo"
    shutil.copytree(DEFAULT_ROOT / "imaging_cnn", root / "imaging_cnn")
    cfg = root / "imaging_cnn" / "config.pbtxt"
    text = cfg.read_text()
    assert 'key: "onnx_file"' in text
    cfg.write_text(text.replace('parameters { key: "onnx_file" value { string_value: "model.onnx" } }\n', ""))
    shim_client = InProcessClient(root)
    x, _ = dataset(3, seed=9)
    out = shim_client.infer("imaging_cnn", {"image__0": x})["probabilities__0"]
    np.testing.assert_allclose(out, InProcessClient(DEFAULT_ROOT).infer("imaging_cnn", {"image__0": x})
                               ["probabilities__0"], rtol=1e-6)


@pytest.mark.parametrize("inputs, match", [
    ({"wrong": np.zeros((1, 1, 64, 64), np.float32)}, "unexpected input"),
    ({}, "missing input"),
    ({"image__0": np.zeros((1, 64, 64), np.float32)}, "must be"),
    ({"image__0": np.zeros((1, 1, 32, 32), np.float32)}, "does not match"),
    ({"image__0": np.zeros((33, 1, 64, 64), np.float32)}, "outside 1..32"),
    ({"image__0": np.zeros((1, 1, 64, 64), np.complex64)}, "cannot become"),
])
def test_bad_input_is_refused(client, inputs, match):
    with pytest.raises(InvalidInput, match=match):
        client.infer("imaging_cnn", inputs)


def test_unknown_model_and_version(client):
    with pytest.raises(ModelNotFound):
        client.infer("nope", {})
    with pytest.raises(ModelNotFound, match="no version 9"):
        client.infer("readmission_risk", {"features": np.zeros((1, 22), np.float32)}, version="9")
    meta = client.metadata("readmission_risk")
    assert meta["versions"] == ["1"] and meta["inputs"][0]["shape"] == [22]


def test_integer_input_is_cast(client):
    out = client.infer("readmission_risk", {"features": np.zeros((2, 22), np.int32)})["probabilities"]
    assert out.shape == (2, 2) and out.dtype == np.float32
