"""Triton backend: KServe v2 over HTTP or gRPC with ``tritonclient``.

Timeouts, retries with exponential backoff on transport errors, per-model
readiness, version selection, and an optional fall-back client (in-process)
used when Triton cannot be reached; every fall-back is logged and counted
(``inference_fallbacks_total``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np

from inference import metrics
from inference.client import BackendUnavailable, InferenceError, InvalidInput, ModelClient, ModelNotFound

log = logging.getLogger(__name__)
T = TypeVar("T")

_NP_TO_V2 = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.float16): "FP16",
             np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32", np.dtype(np.int16): "INT16",
             np.dtype(np.int8): "INT8", np.dtype(np.uint8): "UINT8", np.dtype(np.bool_): "BOOL",
             np.dtype(np.object_): "BYTES"}


def _transport_error(exc: Exception) -> bool:
    """Connection-level failures (worth a retry / fall-back), as opposed to request errors."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        text = str(exc.message() or "").lower()
        if status in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "503", "502", "504"):
            return True
        return any(s in text for s in ("failed to connect", "connection refused", "timed out", "timeout",
                                       "unavailable", "socket closed", "connect"))
    return isinstance(exc, (ConnectionError, TimeoutError, OSError))


class TritonClient:
    backend = "triton"

    def __init__(self, url: str, protocol: str | None = None, timeout_s: float = 10.0, retries: int = 2,
                 backoff_s: float = 0.1, fallback: ModelClient | None = None) -> None:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        scheme = (protocol or parsed.scheme or "http").lower()
        if scheme not in ("http", "grpc"):
            raise ValueError(f"Triton protocol must be http or grpc, not {scheme!r}")
        self.protocol = scheme
        self.backend = f"triton-{scheme}"
        self.address = parsed.netloc or parsed.path
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.fallback = fallback
        self._meta: dict[tuple[str, str], dict[str, Any]] = {}
        if scheme == "http":
            import tritonclient.http as httpclient

            self._mod: Any = httpclient
            self._client: Any = httpclient.InferenceServerClient(
                self.address, connection_timeout=timeout_s, network_timeout=timeout_s)
        else:
            import tritonclient.grpc as grpcclient

            self._mod = grpcclient
            self._client = grpcclient.InferenceServerClient(self.address)

    def close(self) -> None:
        self._client.close()

    # -- transport with retries -------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from tritonclient.utils import InferenceServerException

        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as exc:  # tritonclient raises several transport types
                if not _transport_error(exc):
                    if isinstance(exc, InferenceServerException):
                        raise self._request_error(exc) from exc
                    raise
                metrics.inc("inference_retries_total", backend=self.backend)
                if attempt == self.retries:
                    raise BackendUnavailable(f"Triton at {self.address} ({self.protocol}) {what}: {exc}") from exc
                log.warning("Triton %s %s failed (attempt %d): %s; retrying in %.2fs",
                            self.protocol, what, attempt + 1, exc, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    @staticmethod
    def _request_error(exc: Exception) -> InferenceError:
        msg = str(getattr(exc, "message", lambda: str(exc))())
        low = msg.lower()
        if "unknown model" in low or "not found" in low or "unavailable model" in low or "is not ready" in low:
            return ModelNotFound(msg)
        return InvalidInput(msg)

    def _fallback(self, what: str, exc: BackendUnavailable) -> ModelClient:
        if self.fallback is None:
            raise exc
        metrics.inc("inference_fallbacks_total", backend=self.backend, to=self.fallback.backend)
        log.warning("Triton unavailable (%s: %s); falling back to %s", what, exc, self.fallback.backend)
        return self.fallback

    # -- ModelClient ----------------------------------------------------------------
    def _metadata(self, model: str, version: str) -> dict[str, Any]:
        key = (model, version)
        if key not in self._meta:
            if self.protocol == "http":
                meta = self._call("metadata", lambda: self._client.get_model_metadata(
                    model, model_version=version))
            else:
                meta = self._call("metadata", lambda: self._client.get_model_metadata(
                    model, model_version=version, as_json=True, client_timeout=self.timeout_s))
            self._meta[key] = meta
        return self._meta[key]

    def metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        try:
            return self._metadata(model, version or "")
        except BackendUnavailable as exc:
            return self._fallback("metadata", exc).metadata(model, version)

    def ready(self, model: str | None = None, version: str | None = None) -> bool:
        try:
            if model is None:
                return bool(self._call("ready", self._client.is_server_ready))
            return bool(self._call("ready", lambda: self._client.is_model_ready(model, version or "")))
        except BackendUnavailable as exc:
            if self.fallback is None:
                return False
            return self._fallback("ready", exc).ready(model, version)
        except InferenceError:
            return False

    def infer(self, model: str, inputs: dict[str, np.ndarray], version: str | None = None,
              outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        try:
            meta = self._metadata(model, version or "")
            wanted = outputs or [o["name"] for o in meta["outputs"]]
            infer_inputs = []
            for spec in meta["inputs"]:
                if spec["name"] not in inputs:
                    raise InvalidInput(f"model {model}: missing input {spec['name']!r}")
                arr = np.ascontiguousarray(inputs[spec["name"]])
                if _NP_TO_V2.get(arr.dtype) != spec["datatype"]:
                    arr = arr.astype(_v2_to_np(spec["datatype"]))
                ii = self._mod.InferInput(spec["name"], list(arr.shape), spec["datatype"])
                ii.set_data_from_numpy(arr)
                infer_inputs.append(ii)
            requested = [self._mod.InferRequestedOutput(n) for n in wanted]
            if self.protocol == "http":
                result = self._call("infer", lambda: self._client.infer(
                    model, infer_inputs, model_version=version or "", outputs=requested))
            else:
                result = self._call("infer", lambda: self._client.infer(
                    model, infer_inputs, model_version=version or "", outputs=requested,
                    client_timeout=self.timeout_s))
        except BackendUnavailable as exc:
            return self._fallback("infer", exc).infer(model, inputs, version, outputs)
        metrics.inc("inference_requests_total", backend=self.backend, model=model)
        metrics.inc("inference_seconds_total", time.perf_counter() - t0, backend=self.backend, model=model)
        return {n: result.as_numpy(n) for n in wanted}


def _v2_to_np(datatype: str) -> Any:
    for k, v in _NP_TO_V2.items():
        if v == datatype:
            return k
    raise InvalidInput(f"unsupported datatype {datatype}")
