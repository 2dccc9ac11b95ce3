"""In-process backend: ONNX Runtime on the CPU, or a python-backend ``model.py``.

Reads the same ``config.pbtxt`` and version folders Triton reads. ONNX models
(config parameter ``onnx_file``) run straight on an ``InferenceSession``; other
python-backend models run their ``model.py`` through ``inference.pb_shim``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inference import metrics, pb_shim
from inference.client import InferenceError, InvalidInput, ModelNotFound
from inference.config import ModelConfig
from inference.registry import DEFAULT_ROOT, ModelInfo, ModelRegistry, registry

log = logging.getLogger(__name__)


class _OnnxRunner:
    def __init__(self, path: Path, threads: int) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(outputs, feeds)  # type: ignore[no-any-return]


class _PythonRunner:
    """Runs a Triton python-backend model.py with the shim as ``triton_python_backend_utils``."""

    def __init__(self, info: ModelInfo, version: int) -> None:
        pb_shim.install()
        version_dir = info.path / str(version)
        file = version_dir / (info.config.default_model_filename or "model.py")
        spec = importlib.util.spec_from_file_location(f"_df_model_{info.name}_{version}", file)
        if spec is None or spec.loader is None:
            raise InferenceError(f"cannot load {file}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.model = module.TritonPythonModel()
        text = (info.path / "config.pbtxt").read_text(encoding="utf-8")
        if hasattr(self.model, "initialize"):
            self.model.initialize({"model_config": pb_shim.config_json(text), "model_repository": str(info.path),
                                   "model_version": str(version), "model_name": info.name,
                                   "model_instance_kind": "CPU", "model_instance_name": f"{info.name}_0",
                                   "model_instance_device_id": "0"})

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = pb_shim.InferenceRequest([pb_shim.Tensor(k, v) for k, v in feeds.items()], outputs)
        (response,) = self.model.execute([request])
        if response.has_error():
            raise InferenceError(response.error().message())
        got = {t.name(): t.as_numpy() for t in response.output_tensors()}
        missing = [o for o in outputs if o not in got]
        if missing:
            raise InferenceError(f"model.py returned no {missing}")
        return [got[o] for o in outputs]


class InputCheck:
    """config.pbtxt's input contract, precomputed once per model (validation is on the hot path)."""

    def __init__(self, config: ModelConfig) -> None:
        self.model = config.name
        self.max_batch = config.max_batch_size
        self.specs: list[tuple[str, np.dtype[Any], tuple[int, ...], str]] = [
            (t.name, np.dtype(t.numpy_dtype), t.dims, t.datatype) for t in config.inputs]
        self.names = frozenset(t.name for t in config.inputs)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if inputs.keys() != self.names:
            unknown = set(inputs) - self.names
            if unknown:
                raise InvalidInput(f"model {self.model}: unexpected input(s) {sorted(unknown)}")
            raise InvalidInput(f"model {self.model}: missing input(s) {sorted(self.names - set(inputs))}")
        feeds: dict[str, np.ndarray] = {}
        for name, want, dims, datatype in self.specs:
            arr = inputs[name]
            if not isinstance(arr, np.ndarray):
                arr = np.asarray(arr)
            if datatype == "BYTES":
                arr = arr.astype(np.object_)
            elif arr.dtype != want:
                if not np.can_cast(arr.dtype, want, casting="same_kind"):
                    raise InvalidInput(f"input {name}: dtype {arr.dtype} cannot become {datatype}")
                arr = arr.astype(want)
            shape = arr.shape
            if self.max_batch > 0:
                if len(shape) != len(dims) + 1:
                    raise InvalidInput(f"input {name}: shape {list(shape)} must be [batch] + {list(dims)}")
                if shape[0] < 1 or shape[0] > self.max_batch:
                    raise InvalidInput(f"input {name}: batch {shape[0]} outside 1..{self.max_batch}")
                shape = shape[1:]
            if len(shape) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, shape, strict=True)):
                raise InvalidInput(f"input {name}: shape {list(arr.shape)} does not match dims {list(dims)}")
            feeds[name] = arr
        return feeds


def validate_inputs(config: ModelConfig, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check names, dtypes and shapes against config.pbtxt the way Triton does."""
    return InputCheck(config)(inputs)


@dataclass
class _Loaded:
    runner: _OnnxRunner | _PythonRunner
    check: InputCheck
    outputs: list[str]
    output_set: frozenset[str]
    requests_key: metrics.Key
    seconds_key: metrics.Key
    errors_key: metrics.Key


class InProcessClient:
    """Default backend: no server, no torch; sessions are loaded lazily and cached."""

    backend = "inprocess"

    def __init__(self, root: Path | str | None = None, threads: int | None = None,
                 model_registry: ModelRegistry | None = None) -> None:
        self.registry = model_registry or registry(root or DEFAULT_ROOT)
        self.threads = threads or int(os.environ.get("DIGITALFRONT_INFERENCE_THREADS", "1"))
        self._runners: dict[tuple[str, int], _OnnxRunner | _PythonRunner] = {}
        self._fast: dict[tuple[str, str | None], _Loaded] = {}
        self._lock = threading.Lock()

    def _info(self, model: str) -> ModelInfo:
        try:
            return self.registry.get(model)
        except LookupError as exc:
            raise ModelNotFound(str(exc)) from None

    def _runner(self, info: ModelInfo, version: str | None) -> tuple[int, _OnnxRunner | _PythonRunner]:
        try:
            v = info.resolve_version(version)
        except LookupError as exc:
            raise ModelNotFound(str(exc)) from None
        key = (info.name, v)
        runner = self._runners.get(key)
        if runner is None:
            with self._lock:
                runner = self._runners.get(key)
                if runner is None:
                    onnx_file = info.config.parameters.get("onnx_file")
                    if onnx_file:
                        runner = _OnnxRunner(info.path / str(v) / onnx_file, self.threads)
                    elif info.config.backend == "python":
                        runner = _PythonRunner(info, v)
                    else:
                        raise InferenceError(f"model {info.name}: backend {info.config.backend or info.config.platform}"
                                             " cannot run in-process (needs Triton)")
                    self._runners[key] = runner
                    log.info("loaded model %s version %s in-process", info.name, v)
        return v, runner

    def _loaded(self, model: str, version: str | None) -> _Loaded:
        hit = self._fast.get((model, version))
        if hit is not None:
            return hit
        info = self._info(model)
        _, runner = self._runner(info, version)
        outs = [t.name for t in info.config.outputs]
        labels = {"backend": self.backend, "model": model}
        loaded = _Loaded(runner, InputCheck(info.config), outs, frozenset(outs),
                         metrics.key("inference_requests_total", **labels),
                         metrics.key("inference_seconds_total", **labels),
                         metrics.key("inference_errors_total", **labels))
        self._fast[(model, version)] = loaded
        return loaded

    def infer(self, model: str, inputs: dict[str, np.ndarray], version: str | None = None,
              outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        m = self._loaded(model, version)
        feeds = m.check(inputs)
        names = outputs or m.outputs
        if outputs and not m.output_set.issuperset(outputs):
            raise InvalidInput(f"model {model}: unknown output(s) {sorted(set(outputs) - m.output_set)}")
        t0 = time.perf_counter()
        try:
            results = m.runner.run(names, feeds)
        except InferenceError:
            metrics.add(m.errors_key)
            raise
        except Exception as exc:  # ORT raises its own types for bad values
            metrics.add(m.errors_key)
            raise InvalidInput(f"model {model}: {exc}") from exc
        metrics.add(m.requests_key)
        metrics.add(m.seconds_key, time.perf_counter() - t0)
        return dict(zip(names, results, strict=True))

    def metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        info = self._info(model)
        try:
            versions = [str(info.resolve_version(version))] if version else [str(v) for v in info.served_versions]
        except LookupError as exc:
            raise ModelNotFound(str(exc)) from None
        return {"name": model, "versions": versions, "platform": info.config.backend or info.config.platform,
                "inputs": [t.to_json() for t in info.config.inputs],
                "outputs": [t.to_json() for t in info.config.outputs]}

    def ready(self, model: str | None = None, version: str | None = None) -> bool:
        if model is None:
            return True
        try:
            self._runner(self._info(model), version)
        except InferenceError:
            return False
        except Exception:  # a model that fails to load is not ready; say why in the log
            log.exception("model %s failed to load", model)
            return False
        return True
