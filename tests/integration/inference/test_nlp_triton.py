"""The nlp_pipeline model in the real Triton Inference Server (nvidia-pytriton's CPU ``tritonserver``,
python backend stub from ``.venv-triton``): the stub imports our ``nlp`` package and medSpaCy through the
model's bootstrap, and HTTP (our TritonClient and a plain KServe v2 JSON request) and gRPC give the
in-process backend's outputs. Skipped with the reason when the binary is absent or cannot start.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from inference.client import InvalidInput
from inference.inprocess import InProcessClient
from inference.triton import TritonClient
from inference.triton_launcher import TritonUnavailable, start_triton
from nlp.eval import load_corpus

NOTE = (
    "HPI: 58 yo M with history of hypertension presents with chest pain. Denies shortness of breath.\n"
    "Allergies: penicillin (hives).\n"
    "Family History: Mother with breast cancer.\n"
    "Medications: metformin 500 mg BID. Will start atorvastatin.\n"
    "Plan: return if fever. Cannot rule out pneumonia. Café-au-lait spots noted.\n"
)


def _notes() -> list[str]:
    corpus = [ex.text for ex in load_corpus()]
    return [*corpus[3::25], NOTE]


def _batch(texts: list[str]) -> np.ndarray:
    return np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)


def _rows(arr: np.ndarray) -> list:
    assert arr.ndim == 2 and arr.shape[1] == 1
    return [json.loads(v.decode("utf-8") if isinstance(v, bytes) else v) for v in arr[:, 0]]


def _without_recorded(bundle: dict) -> dict:
    """The extraction timestamp (Provenance.recorded, recordedDate...) differs between runs: mask it."""
    stamps = {e["resource"]["recorded"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"}
    text = json.dumps(bundle)
    for stamp in stamps:
        text = text.replace(json.dumps(stamp), '"<recorded>"')
    return json.loads(text)


@pytest.fixture(scope="module")
def triton():
    try:
        server = start_triton(["nlp_pipeline"])
    except TritonUnavailable as exc:
        pytest.skip(f"Triton server binary cannot start here (or the NLP model failed to load in it): {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local():
    return InProcessClient()


@pytest.fixture(scope="module", params=["http", "grpc"])
def remote(request, triton):
    url = triton.http_url if request.param == "http" else triton.grpc_url
    client = TritonClient(url, timeout_s=60, retries=0, fallback=None)
    yield client
    client.close()


def test_model_is_ready_in_triton(remote):
    assert remote.ready("nlp_pipeline") and remote.ready("nlp_pipeline", "1")
    meta = remote.metadata("nlp_pipeline")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("text", "BYTES")]
    assert sorted(o["name"] for o in meta["outputs"]) == ["bundle", "mentions"]


def test_outputs_equal_in_process(remote, local):
    texts = _notes()
    got = remote.infer("nlp_pipeline", {"text": _batch(texts)})
    want = local.infer("nlp_pipeline", {"text": _batch(texts)})
    assert _rows(got["mentions"]) == _rows(want["mentions"])
    assert sum(len(m) for m in _rows(got["mentions"])) > 15
    assert [_without_recorded(b) for b in _rows(got["bundle"])] == \
        [_without_recorded(b) for b in _rows(want["bundle"])]


def test_requested_output_only(remote, local):
    got = remote.infer("nlp_pipeline", {"text": _batch([NOTE])}, outputs=["mentions"])
    assert list(got) == ["mentions"]
    assert _rows(got["mentions"]) == _rows(local.infer("nlp_pipeline", {"text": _batch([NOTE])})["mentions"])


def test_plain_kserve_v2_json_request(triton, local):
    """What a non-Python caller sends: BYTES as JSON strings, JSON output."""
    body = {"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": [NOTE]}],
            "outputs": [{"name": "mentions"}]}
    resp = requests.post(f"{triton.http_url}/v2/models/nlp_pipeline/infer", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    (out,) = resp.json()["outputs"]
    assert out["name"] == "mentions" and out["datatype"] == "BYTES" and out["shape"] == [1, 1]
    want = _rows(local.infer("nlp_pipeline", {"text": _batch([NOTE])}, outputs=["mentions"])["mentions"])
    assert [json.loads(out["data"][0])] == want


def test_bad_requests_are_errors_and_the_model_keeps_serving(remote):
    with pytest.raises(InvalidInput, match="(?i)utf-8"):
        remote.infer("nlp_pipeline", {"text": np.array([[b"chest pain \xff"]], dtype=np.object_)})
    with pytest.raises(InvalidInput):
        remote.infer("nlp_pipeline", {"text": _batch(["cough"] * 17)})  # max_batch_size 16
    out = remote.infer("nlp_pipeline", {"text": _batch(["Fever."])}, outputs=["mentions"])
    assert _rows(out["mentions"])[0][0]["concept_id"] == "fever"
