"""Reading Triton ``config.pbtxt`` files with Triton's own protobuf schema.

Both backends take their view of a model (tensor names, dtypes, dims,
``max_batch_size``) from the same file Triton reads, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

# Triton TYPE_* enum name -> (KServe v2 datatype, numpy dtype)
_DTYPES: dict[str, tuple[str, type]] = {
    "TYPE_BOOL": ("BOOL", np.bool_),
    "TYPE_UINT8": ("UINT8", np.uint8),
    "TYPE_UINT16": ("UINT16", np.uint16),
    "TYPE_UINT32": ("UINT32", np.uint32),
    "TYPE_UINT64": ("UINT64", np.uint64),
    "TYPE_INT8": ("INT8", np.int8),
    "TYPE_INT16": ("INT16", np.int16),
    "TYPE_INT32": ("INT32", np.int32),
    "TYPE_INT64": ("INT64", np.int64),
    "TYPE_FP16": ("FP16", np.float16),
    "TYPE_FP32": ("FP32", np.float32),
    "TYPE_FP64": ("FP64", np.float64),
    "TYPE_STRING": ("BYTES", np.object_),
}


class ModelConfigError(ValueError):
    """A config.pbtxt that Triton would also reject (or that we cannot serve)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe v2 name: FP32, INT64, BYTES...
    dims: tuple[int, ...]  # without the batch dimension; -1 = variable

    @property
    def numpy_dtype(self) -> type:
        for v2, np_type in _DTYPES.values():
            if v2 == self.datatype:
                return np_type
        raise ModelConfigError(f"unknown datatype {self.datatype}")

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.dims)}


@dataclass(frozen=True)
class ModelConfig:
    name: str
    backend: str  # "python", "onnxruntime", "pytorch"...
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instance_kind: str  # KIND_CPU / KIND_GPU / KIND_AUTO
    dynamic_batching: bool
    parameters: dict[str, str] = field(default_factory=dict)
    default_model_filename: str = ""
    version_policy: str = "latest"

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(name)

    def signature(self) -> tuple[object, ...]:
        """What must match between the CPU and GPU configs of one model."""
        return (self.max_batch_size,
                tuple((t.name, t.datatype, t.dims) for t in self.inputs),
                tuple((t.name, t.datatype, t.dims) for t in self.outputs))


def _tensor(t: mc.ModelInput | mc.ModelOutput) -> TensorSpec:
    type_name = mc.DataType.Name(t.data_type)
    if type_name not in _DTYPES:
        raise ModelConfigError(f"tensor {t.name}: unsupported data_type {type_name}")
    dims = tuple(int(d) for d in t.dims)
    return TensorSpec(t.name, _DTYPES[type_name][0], dims)


def parse_config(text: str, default_name: str = "") -> ModelConfig:
    """Parse config.pbtxt text; raise ModelConfigError on anything malformed."""
    msg = mc.ModelConfig()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        raise ModelConfigError(f"config.pbtxt does not parse: {exc}") from exc
    if not msg.input or not msg.output:
        raise ModelConfigError(f"model {msg.name or default_name}: config declares no inputs or outputs")
    kinds = [mc.ModelInstanceGroup.Kind.Name(g.kind) for g in msg.instance_group]
    policy = msg.version_policy.WhichOneof("policy_choice") or "latest"
    return ModelConfig(
        name=msg.name or default_name,
        backend=msg.backend,
        platform=msg.platform,
        max_batch_size=int(msg.max_batch_size),
        inputs=tuple(_tensor(t) for t in msg.input),
        outputs=tuple(_tensor(t) for t in msg.output),
        instance_kind=kinds[0] if kinds else "KIND_AUTO",
        dynamic_batching=msg.HasField("dynamic_batching"),
        parameters={k: v.string_value for k, v in msg.parameters.items()},
        default_model_filename=msg.default_model_filename,
        version_policy=policy,
    )


def load_config(path: Path) -> ModelConfig:
    return parse_config(path.read_text(encoding="utf-8"), default_name=path.parent.name)
