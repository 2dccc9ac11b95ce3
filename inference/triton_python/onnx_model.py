"""Triton python-backend model that runs the version's ONNX file with ONNX Runtime.

The pytriton ``tritonserver`` binary has only the python backend, so on the
CPU Triton serves our ONNX models through this wrapper; GPU deployments use
``configs/gpu.pbtxt`` (the native ``onnxruntime_onnx`` platform) instead.
Copied into each ``<model>/<version>/model.py`` by the training scripts.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        self.session = ort.InferenceSession(os.path.join(version_dir, params.get("onnx_file", "model.onnx")),
                                            sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = [(i["name"], pb_utils.triton_string_to_numpy(i["data_type"])) for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy().astype(dtype, copy=False)
                     for name, dtype in self.inputs}
            results = self.session.run(self.outputs, feeds)
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value))
                       for name, value in zip(self.outputs, results, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self):
        self.session = None
