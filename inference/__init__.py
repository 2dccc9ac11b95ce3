"""DigitalFront inference: one Triton-layout model repository, two backends.

``get_model_client(settings)`` returns the in-process ONNX Runtime backend
(default) or the Triton backend (``inference_backend = "triton"``), the latter
falling back to in-process when Triton is unreachable unless disabled.
"""

from __future__ import annotations

import logging
from typing import Any

from inference.client import (
    BackendUnavailable,
    InferenceError,
    InvalidInput,
    ModelClient,
    ModelNotFound,
)

__all__ = ["BackendUnavailable", "InferenceError", "InvalidInput", "ModelClient", "ModelNotFound",
           "get_model_client"]

log = logging.getLogger(__name__)


def _setting(settings_like: Any, name: str, default: str) -> str:
    if settings_like is None:
        return default
    if isinstance(settings_like, dict):
        return str(settings_like.get(name, default) or default)
    value = getattr(settings_like, name, None)
    if value in (None, ""):
        value = (getattr(settings_like, "extra", None) or {}).get(name)
    return str(value) if value not in (None, "") else default


def model_repository(settings_like: Any = None) -> str:
    """The model repository the server's models (and their cards) are read from: ``model_repository`` when
    set, else the shipped one."""
    from inference.registry import repository_root

    return _setting(settings_like, "model_repository", "") or str(repository_root(settings_like))


def get_model_client(settings_like: Any = None) -> ModelClient:
    """Pick the backend from ``inference_backend`` ("inprocess" | "triton") and ``triton_url``.

    Optional keys (attributes, or ``extra``): ``model_repository``, ``triton_protocol``,
    ``triton_timeout_s``, ``triton_retries``, ``triton_backoff_s``, ``inference_fallback``
    ("true"/"false", default true).
    """
    from inference.inprocess import InProcessClient

    local = InProcessClient(model_repository(settings_like))
    backend = _setting(settings_like, "inference_backend", "inprocess").lower()
    if backend in ("inprocess", "in-process", "local", "cpu"):
        return local
    if backend != "triton":
        raise ValueError(f"unknown inference backend {backend!r} (inprocess | triton)")
    url = _setting(settings_like, "triton_url", "")
    if not url:
        raise ValueError("inference_backend=triton needs triton_url (http://host:8000 or grpc://host:8001)")
    from inference.triton import TritonClient

    fallback = _setting(settings_like, "inference_fallback", "true").lower() not in ("0", "false", "no", "off")
    client = TritonClient(
        url,
        protocol=_setting(settings_like, "triton_protocol", "") or None,
        timeout_s=float(_setting(settings_like, "triton_timeout_s", "10")),
        retries=int(_setting(settings_like, "triton_retries", "2")),
        backoff_s=float(_setting(settings_like, "triton_backoff_s", "0.1")),
        fallback=local if fallback else None,
    )
    log.info("inference via Triton %s (fall-back to in-process: %s)", url, fallback)
    return client
