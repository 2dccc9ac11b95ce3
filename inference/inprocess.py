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
        return [np.asarray(a) for a in self.session.run(outputs, feeds)]


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


def validate_inputs(config: ModelConfig, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check names, dtypes and shapes against config.pbtxt the way Triton does."""
    expected = {t.name for t in config.inputs}
    unknown = set(inputs) - expected
    if unknown:
        raise InvalidInput(f"model {config.name}: unexpected input(s) {sorted(unknown)}")
    feeds: dict[str, np.ndarray] = {}
    for spec in config.inputs:
        if spec.name not in inputs:
            raise InvalidInput(f"model {config.name}: missing input {spec.name!r}")
        arr = np.asarray(inputs[spec.name])
        want: np.dtype[Any] = np.dtype(spec.numpy_dtype)
        if spec.datatype == "BYTES":
            arr = arr.astype(np.object_)
        elif arr.dtype != want:
            if not np.can_cast(arr.dtype, want, casting="same_kind"):
                raise InvalidInput(f"input {spec.name}: dtype {arr.dtype} cannot become {spec.datatype}")
            arr = arr.astype(want)
        shape = arr.shape
        dims = spec.dims
        if config.max_batch_size > 0:
            if len(shape) != len(dims) + 1:
                raise InvalidInput(f"input {spec.name}: shape {list(shape)} must be [batch] + {list(dims)}")
            if shape[0] < 1 or shape[0] > config.max_batch_size:
                raise InvalidInput(f"input {spec.name}: batch {shape[0]} outside 1..{config.max_batch_size}")
            shape = shape[1:]
        if len(shape) != len(dims) or any(d not in (-1, s) for d, s in zip(dims, shape, strict=True)):
            raise InvalidInput(f"input {spec.name}: shape {list(arr.shape)} does not match dims {list(dims)}")
        feeds[spec.name] = arr
    return feeds


class InProcessClient:
    """Default backend: no server, no torch; sessions are loaded lazily and cached."""

    backend = "inprocess"

    def __init__(self, root: Path | str | None = None, threads: int | None = None,
                 model_registry: ModelRegistry | None = None) -> None:
        self.registry = model_registry or registry(root or DEFAULT_ROOT)
        self.threads = threads or int(os.environ.get("DIGITALFRONT_INFERENCE_THREADS", "1"))
        self._runners: dict[tuple[str, int], _OnnxRunner | _PythonRunner] = {}
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

    def infer(self, model: str, inputs: dict[str, np.ndarray], version: str | None = None,
              outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        info = self._info(model)
        feeds = validate_inputs(info.config, inputs)
        names = outputs or [t.name for t in info.config.outputs]
        unknown = set(names) - {t.name for t in info.config.outputs}
        if unknown:
            raise InvalidInput(f"model {model}: unknown output(s) {sorted(unknown)}")
        _, runner = self._runner(info, version)
        t0 = time.perf_counter()
        try:
            results = runner.run(names, feeds)
        except InferenceError:
            metrics.inc("inference_errors_total", backend=self.backend, model=model)
            raise
        except Exception as exc:  # ORT raises its own types for bad values
            metrics.inc("inference_errors_total", backend=self.backend, model=model)
            raise InvalidInput(f"model {model}: {exc}") from exc
        metrics.inc("inference_requests_total", backend=self.backend, model=model)
        metrics.inc("inference_seconds_total", time.perf_counter() - t0, backend=self.backend, model=model)
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
