"""A minimal in-process stand-in for Triton's ``triton_python_backend_utils``.

Lets the in-process backend run a python-backend ``model.py`` (such as the NLP
pipeline) unchanged, so one repository serves both backends. Only the calls
our models use are provided.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import numpy as np

_NP = {"TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8, "TYPE_INT8": np.int8, "TYPE_INT16": np.int16,
       "TYPE_INT32": np.int32, "TYPE_INT64": np.int64, "TYPE_FP16": np.float16, "TYPE_FP32": np.float32,
       "TYPE_FP64": np.float64, "TYPE_STRING": np.object_, "TYPE_UINT16": np.uint16,
       "TYPE_UINT32": np.uint32, "TYPE_UINT64": np.uint64}


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name = name
        self._array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceRequest:
    def __init__(self, inputs: list[Tensor], requested_output_names: list[str] | None = None) -> None:
        self._inputs = inputs
        self._requested = requested_output_names or []

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested


class TritonError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    def message(self) -> str:
        return self._message


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None) -> None:
        self._outputs = output_tensors or []
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    for t in request.inputs():
        if t.name() == name:
            return t
    return None


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    for t in response.output_tensors():
        if t.name() == name:
            return t
    return None


def triton_string_to_numpy(type_name: str) -> Any:
    return _NP[type_name]


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    for out in model_config.get("output", []):
        if out.get("name") == name:
            return dict(out)
    return None


def get_input_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    for inp in model_config.get("input", []):
        if inp.get("name") == name:
            return dict(inp)
    return None


def install() -> types.ModuleType:
    """Register this module as ``triton_python_backend_utils`` unless the real one is importable."""
    existing = sys.modules.get("triton_python_backend_utils")
    if existing is not None:
        return existing
    module = sys.modules[__name__]
    sys.modules["triton_python_backend_utils"] = module
    return module


def config_json(text: str) -> str:
    """config.pbtxt -> the JSON Triton hands to ``initialize(args['model_config'])``."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2 as mc

    msg = text_format.Parse(text, mc.ModelConfig())
    return json.dumps(json_format.MessageToDict(msg, preserving_proto_field_name=True))
