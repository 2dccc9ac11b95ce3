"""The Triton client's failure paths against a real closed port (no server listening)."""

from __future__ import annotations

import logging
import socket

import numpy as np
import pytest

from inference import get_model_client, metrics
from inference.client import BackendUnavailable
from inference.inprocess import InProcessClient
from inference.triton import TritonClient


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connections are refused


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_falls_back_to_in_process_when_triton_is_down(scheme, caplog):
    url = f"{scheme}://127.0.0.1:{_closed_port()}"
    client = TritonClient(url, timeout_s=1.0, retries=1, backoff_s=0.01, fallback=InProcessClient())
    before = metrics.get("inference_fallbacks_total", backend=f"triton-{scheme}", to="inprocess")
    retries_before = metrics.get("inference_retries_total", backend=f"triton-{scheme}")
    x = np.zeros((1, 22), np.float32)
    with caplog.at_level(logging.WARNING, logger="inference.triton"):
        out = client.infer("readmission_risk", {"features": x})
    expected = InProcessClient().infer("readmission_risk", {"features": x})
    np.testing.assert_array_equal(out["probabilities"], expected["probabilities"])
    assert metrics.get("inference_fallbacks_total", backend=f"triton-{scheme}", to="inprocess") == before + 1
    assert metrics.get("inference_retries_total", backend=f"triton-{scheme}") >= retries_before + 2
    assert any("falling back" in r.getMessage() for r in caplog.records)
    assert client.ready("readmission_risk")  # via the fall-back


def test_without_fallback_the_outage_is_an_error():
    client = TritonClient(f"http://127.0.0.1:{_closed_port()}", timeout_s=1.0, retries=0, fallback=None)
    with pytest.raises(BackendUnavailable):
        client.infer("readmission_risk", {"features": np.zeros((1, 22), np.float32)})
    assert client.ready() is False


def test_factory_builds_triton_client_from_settings():
    class S:
        inference_backend = "triton"
        triton_url = "grpc://127.0.0.1:1"
        extra = {"triton_retries": "0", "inference_fallback": "false"}

    c = get_model_client(S())
    assert isinstance(c, TritonClient) and c.protocol == "grpc" and c.fallback is None and c.retries == 0
    with pytest.raises(ValueError, match="triton_url"):
        get_model_client({"inference_backend": "triton"})
    with pytest.raises(ValueError, match="unknown inference backend"):
        get_model_client({"inference_backend": "tpu"})
    with pytest.raises(ValueError, match="protocol"):
        TritonClient("ftp://x:1")


@pytest.mark.timeout(120)  # a call that waited on the hung server forever would fail here, not hang CI
@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_server_that_accepts_and_never_answers_times_out_and_falls_back(scheme):
    """A hung Triton (the port accepts connections, nothing ever answers): each call gives up after
    ``timeout_s`` and the client falls back; without a fall-back it is an error."""
    import threading

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        hung.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(hung.accept()[0])  # kept open, never read or answered
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    url = f"{scheme}://127.0.0.1:{hung.getsockname()[1]}"
    x = np.zeros((1, 22), np.float32)
    try:
        client = TritonClient(url, timeout_s=0.5, retries=0, fallback=InProcessClient())
        out = client.infer("readmission_risk", {"features": x})
        np.testing.assert_array_equal(out["probabilities"],
                                      InProcessClient().infer("readmission_risk", {"features": x})["probabilities"])
        strict = TritonClient(url, timeout_s=0.5, retries=0, fallback=None)
        with pytest.raises(BackendUnavailable):
            strict.infer("readmission_risk", {"features": x})
    finally:
        stop.set()
        for s in held:
            s.close()
        hung.close()
