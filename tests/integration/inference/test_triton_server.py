"""The real Triton Inference Server (the ``tritonserver`` binary from nvidia-pytriton, CPU, python
backend) on our model repository: HTTP and gRPC must give the in-process backend's outputs.

Needs ``.venv-triton`` (``python3 -m venv .venv-triton && .venv-triton/bin/pip install nvidia-pytriton
onnxruntime==1.32.0``); skipped with the reason when the binary is absent or cannot start.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from inference import get_model_client, metrics
from inference.client import ModelNotFound
from inference.features import FEATURE_NAMES
from inference.inprocess import InProcessClient
from inference.training.phantoms import dataset
from inference.triton import TritonClient
from inference.triton_launcher import TritonUnavailable, start_triton
from tests.integration.inference.inference_helpers import build_app, dicom_file, serve

MODELS = ["imaging_cnn", "readmission_risk"]


@pytest.fixture(scope="module")
def triton():
    try:
        server = start_triton(MODELS)
    except TritonUnavailable as exc:
        pytest.skip(f"Triton server binary cannot start here: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local():
    return InProcessClient()


@pytest.fixture(scope="module", params=["http", "grpc"])
def remote(request, triton):
    url = triton.http_url if request.param == "http" else triton.grpc_url
    client = TritonClient(url, timeout_s=10, retries=1, fallback=None)
    yield client
    client.close()


def test_server_and_models_are_ready(remote):
    assert remote.ready()
    for m in MODELS:
        assert remote.ready(m) and remote.ready(m, "1")
    assert not remote.ready("imaging_cnn", "5")
    assert not remote.ready("nlp_nope")


def test_imaging_outputs_equal_in_process(remote, local):
    x, _ = dataset(16, seed=11)
    for batch in (x[:1], x):
        got = remote.infer("imaging_cnn", {"image__0": batch}, version="1")["probabilities__0"]
        want = local.infer("imaging_cnn", {"image__0": batch})["probabilities__0"]
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_readmission_outputs_equal_in_process(remote, local):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, size=(40, len(FEATURE_NAMES))).astype(np.float32)
    got = remote.infer("readmission_risk", {"features": x})["probabilities"]
    np.testing.assert_allclose(got, local.infer("readmission_risk", {"features": x})["probabilities"], rtol=1e-5)


def test_metadata_matches_the_repository(remote, local):
    meta = remote.metadata("imaging_cnn")
    assert meta["name"] == "imaging_cnn" and "1" in meta["versions"]
    local_meta = local.metadata("imaging_cnn")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == \
        [(i["name"], i["datatype"]) for i in local_meta["inputs"]]
    assert [int(d) for d in meta["inputs"][0]["shape"]] == [-1, 1, 64, 64]


def test_unknown_model_or_version_is_not_found(remote):
    x = np.zeros((1, len(FEATURE_NAMES)), np.float32)
    with pytest.raises(ModelNotFound):
        remote.infer("no_such_model", {"features": x})
    with pytest.raises(ModelNotFound):
        remote.infer("readmission_risk", {"features": x}, version="7")


def test_analyze_through_triton_end_to_end(triton, services_factory):
    services = services_factory(inference_backend="triton", triton_url=triton.grpc_url)
    live, stop = serve(build_app(services))
    try:
        before = metrics.get("inference_requests_total", backend="triton-grpc", model="imaging_cnn")
        r = requests.post(f"{live.base}/ImagingStudy/$analyze", data=dicom_file("CT_small.dcm"),
                          headers={"Content-Type": "application/dicom"}, timeout=60)
        assert r.status_code == 200, r.text
        assert metrics.get("inference_requests_total", backend="triton-grpc", model="imaging_cnn") == before + 1
        models = requests.get(f"{live.url}/inference/models", timeout=30).json()
        assert models["backend"] == "triton-grpc"
    finally:
        stop()


def test_fallback_when_the_server_goes_away(local):
    """Start a second server, stop it, and check the client falls back to in-process (counted)."""
    try:
        server = start_triton(["readmission_risk"])
    except TritonUnavailable as exc:
        pytest.skip(f"Triton server binary cannot start here: {exc}")
    client = get_model_client({"inference_backend": "triton", "triton_url": server.http_url,
                               "triton_retries": "1", "triton_backoff_s": "0.01", "triton_timeout_s": "2"})
    x = np.ones((2, len(FEATURE_NAMES)), np.float32)
    first = client.infer("readmission_risk", {"features": x})["probabilities"]
    server.stop()
    before = metrics.get("inference_fallbacks_total", backend="triton-http", to="inprocess")
    second = client.infer("readmission_risk", {"features": x})["probabilities"]
    assert metrics.get("inference_fallbacks_total", backend="triton-http", to="inprocess") == before + 1
    np.testing.assert_allclose(first, second, rtol=1e-5)
