from __future__ import annotations

import pytest

from inference.config import ModelConfigError, parse_config
from inference.registry import DEFAULT_ROOT, ModelRegistry


def test_every_shipped_config_parses_with_tritons_schema():
    configs = sorted(DEFAULT_ROOT.glob("*/config.pbtxt")) + sorted(DEFAULT_ROOT.glob("*/configs/*.pbtxt"))
    assert len(configs) >= 5
    for path in configs:
        cfg = parse_config(path.read_text(), path.parent.name)
        assert cfg.inputs and cfg.outputs, path


def test_gpu_configs_agree_with_python_backend_configs():
    reg = ModelRegistry(DEFAULT_ROOT)
    checked = 0
    for name in ("imaging_cnn", "readmission_risk"):
        info = reg.get(name)
        assert info.config.backend == "python"
        assert info.config.instance_kind == "KIND_CPU"
        assert "gpu" in info.alt_configs
        for alt_name, alt in info.alt_configs.items():
            assert alt.name == info.config.name
            assert alt.signature() == info.config.signature(), (name, alt_name)
            assert alt.platform in ("onnxruntime_onnx", "pytorch_libtorch")
            assert alt.dynamic_batching
            assert alt.instance_kind == "KIND_GPU"
            model_file = info.version_dir() / alt.default_model_filename
            assert model_file.is_file() and model_file.stat().st_size < 5_000_000
            checked += 1
    assert checked == 3  # imaging: onnxruntime + libtorch; readmission: onnxruntime


def test_gpu_onnx_matches_onnx_graph_signature():
    import onnxruntime as ort

    reg = ModelRegistry(DEFAULT_ROOT)
    for name in ("imaging_cnn", "readmission_risk"):
        info = reg.get(name)
        sess = ort.InferenceSession(str(info.version_dir() / "model.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == [t.name for t in info.config.inputs]
        assert [o.name for o in sess.get_outputs()] == [t.name for t in info.config.outputs]
        for i, spec in zip(sess.get_inputs(), info.config.inputs, strict=True):
            assert i.type == "tensor(float)" and spec.datatype == "FP32"
            assert list(i.shape[1:]) == list(spec.dims)


@pytest.mark.parametrize("text", [
    'name: "x" input [ { name: "a" data_type: TYPE_FP32 dims: [ 1 ] } ]',  # no output
    'name: "x" max_batch_size: "lots"',
    'name: "x" input [ { name: "a" data_type: TYPE_NOPE dims: [ 1 ] } ] output [ { name: "b" } ]',
])
def test_malformed_config_is_refused(text):
    with pytest.raises(ModelConfigError):
        parse_config(text)
