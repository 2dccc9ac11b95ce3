"""GPU throughput of the imaging model: TorchScript on CUDA and ONNX Runtime CUDA EP.

    python bench/gpu/inference_gpu_bench.py [--quick] [--batches 1,16,32,256] [--json OUT]

Needs a CUDA machine with ``torch`` (CUDA build) and/or ``onnxruntime-gpu``;
each path that is unavailable is reported as skipped, not faked. The baseline
is ONNX Runtime on the CPU with the same model and inputs, in the same run.
Reports median latency, p99 and images/s per batch size. Uses only the shipped
repository files (inference/model_repository/imaging_cnn/1/model.{onnx,pt}).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
VERSION_DIR = ROOT / "inference" / "model_repository" / "imaging_cnn" / "1"
INPUT, OUTPUT = "image__0", "probabilities__0"


def timed(fn: Callable[[], object], n: int, warmup: int, sync: Callable[[], None]) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def summarise(samples: list[float], batch: int) -> dict[str, float]:
    s = sorted(samples)
    p50 = statistics.median(s)
    return {"p50_ms": round(p50 * 1e3, 4), "p99_ms": round(s[int(0.99 * (len(s) - 1))] * 1e3, 4),
            "images_per_s": round(batch / p50, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batches", default="1,16,32,256")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    n, warmup = (50, 10) if args.quick else (300, 30)
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    inputs = {b: rng.random((b, 1, 64, 64), dtype=np.float32) for b in batches}
    results: dict[str, object] = {"machine": platform.node(), "python": platform.python_version(),
                                  "n": n, "paths": {}}
    paths: dict[str, dict[str, object]] = results["paths"]  # type: ignore[assignment]

    import onnxruntime as ort

    results["onnxruntime"] = ort.__version__
    cpu = ort.InferenceSession(str(VERSION_DIR / "model.onnx"), providers=["CPUExecutionProvider"])
    paths["onnxruntime-cpu (baseline)"] = {
        str(b): summarise(timed(lambda b=b: cpu.run([OUTPUT], {INPUT: inputs[b]}), n, warmup, lambda: None), b)
        for b in batches}

    if "CUDAExecutionProvider" in ort.get_available_providers():
        gpu = ort.InferenceSession(str(VERSION_DIR / "model.onnx"),
                                   providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        paths["onnxruntime-cuda"] = {
            str(b): summarise(timed(lambda b=b: gpu.run([OUTPUT], {INPUT: inputs[b]}), n, warmup, lambda: None), b)
            for b in batches}
        # I/O binding keeps inputs on the device: the model's own throughput, without host copies.
        binding_rows = {}
        for b in batches:
            ort_value = ort.OrtValue.ortvalue_from_numpy(inputs[b], "cuda", 0)
            io = gpu.io_binding()
            io.bind_ortvalue_input(INPUT, ort_value)
            io.bind_output(OUTPUT, "cuda")
            binding_rows[str(b)] = summarise(timed(lambda io=io: gpu.run_with_iobinding(io), n, warmup,
                                                   lambda: None), b)
        paths["onnxruntime-cuda (io binding)"] = binding_rows
    else:
        paths["onnxruntime-cuda"] = {"skipped": f"no CUDAExecutionProvider in {ort.get_available_providers()}"}

    try:
        import torch
    except ImportError:
        paths["torchscript-cuda"] = {"skipped": "torch is not installed"}
    else:
        results["torch"] = torch.__version__
        if torch.cuda.is_available():
            results["gpu"] = torch.cuda.get_device_name(0)
            model = torch.jit.load(str(VERSION_DIR / "model.pt"), map_location="cuda").eval()
            rows = {}
            with torch.inference_mode():
                for b in batches:
                    x = torch.from_numpy(inputs[b]).cuda()
                    rows[str(b)] = summarise(timed(lambda x=x: model(x), n, warmup, torch.cuda.synchronize), b)
                x16 = torch.from_numpy(inputs[batches[-1]]).cuda()
                ref = cpu.run([OUTPUT], {INPUT: inputs[batches[-1]]})[0]
                max_diff = float(np.abs(model(x16).cpu().numpy() - ref).max())
            paths["torchscript-cuda"] = rows
            results["torchscript_vs_onnx_cpu_max_abs_diff"] = max_diff
        else:
            paths["torchscript-cuda"] = {"skipped": "torch.cuda.is_available() is False"}

    base = paths["onnxruntime-cpu (baseline)"]
    print(f"machine {results['machine']} gpu={results.get('gpu', '-')} n={n}")
    print("| path | batch | p50 ms | p99 ms | images/s | x CPU baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows in paths.items():
        if "skipped" in rows:
            print(f"| {name} | - | - | - | - | skipped: {rows['skipped']} |")
            continue
        for b, r in rows.items():
            assert isinstance(r, dict)
            ratio = r["images_per_s"] / base[b]["images_per_s"]  # type: ignore[index]
            print(f"| {name} | {b} | {r['p50_ms']} | {r['p99_ms']} | {r['images_per_s']} | {ratio:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
