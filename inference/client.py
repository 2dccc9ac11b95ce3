"""The ``ModelClient`` protocol every backend implements, and its errors."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


class InferenceError(Exception):
    """Base class; ``status`` is the HTTP status a web caller should answer with."""

    status = 500


class ModelNotFound(InferenceError):
    status = 404


class InvalidInput(InferenceError):
    status = 400


class BackendUnavailable(InferenceError):
    status = 503


@runtime_checkable
class ModelClient(Protocol):
    """KServe-v2-shaped inference: named numpy tensors in and out."""

    backend: str

    def infer(self, model: str, inputs: dict[str, np.ndarray], version: str | None = None,
              outputs: list[str] | None = None) -> dict[str, np.ndarray]: ...

    def metadata(self, model: str, version: str | None = None) -> dict[str, Any]: ...

    def ready(self, model: str | None = None, version: str | None = None) -> bool: ...
