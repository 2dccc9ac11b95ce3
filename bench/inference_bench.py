"""Inference benchmarks: in-process backend vs bare ONNX Runtime, and Triton (HTTP, gRPC).

    .venv/bin/python bench/inference_bench.py [--quick] [--no-triton]

Same model (imaging_cnn), same inputs, same thread count in one run: the
baseline is a bare ``onnxruntime.InferenceSession.run``; the ratio is
in-process median / bare median (target <= 1.2). Triton is the CPU
``tritonserver`` from ``.venv-triton`` (python backend running the same ONNX),
compared with the in-process figure of the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.inprocess import InProcessClient  # noqa: E402
from inference.registry import DEFAULT_ROOT  # noqa: E402
from inference.training.phantoms import dataset  # noqa: E402

MODEL, INPUT, OUTPUT = "imaging_cnn", "image__0", "probabilities__0"


def measure(fn: Callable[[], object], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary(samples: list[float], batch: int) -> dict[str, float]:
    s = sorted(samples)
    p50 = statistics.median(s)
    p99 = s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]
    return {"p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3, "req_s": 1 / p50, "img_s": batch / p50}


def interleaved(fns: dict[str, Callable[[], object]], n: int, warmup: int, rounds: int = 5) -> dict[str, list[float]]:
    """Alternate the contenders in rounds so machine noise hits them alike."""
    got: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        measure(fn, 0, warmup)
    for _ in range(rounds):
        for k, fn in fns.items():
            got[k].extend(measure(fn, max(1, n // rounds), 0))
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--no-triton", action="store_true")
    args = ap.parse_args()
    n, warmup = (60, 5) if args.quick else (600, 30)
    x_all, _ = dataset(16, seed=42)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    bare = ort.InferenceSession(str(DEFAULT_ROOT / MODEL / "1" / "model.onnx"), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    local = InProcessClient(threads=1)
    local.ready(MODEL)

    rows: list[tuple[str, int, dict[str, float], str]] = []
    triton = None
    remotes = {}
    if not args.no_triton:
        from inference.triton import TritonClient
        from inference.triton_launcher import TritonUnavailable, start_triton

        try:
            triton = start_triton([MODEL])
            remotes = {"triton-http": TritonClient(triton.http_url, retries=0),
                       "triton-grpc": TritonClient(triton.grpc_url, retries=0)}
        except TritonUnavailable as exc:
            print(f"Triton skipped: {str(exc)[:300]}")
    try:
        for batch in (1, 16):
            x = np.ascontiguousarray(x_all[:batch])
            fns: dict[str, Callable[[], object]] = {
                "bare onnxruntime": lambda x=x: bare.run([OUTPUT], {INPUT: x}),
                "in-process": lambda x=x: local.infer(MODEL, {INPUT: x}),
            }
            for name, client in remotes.items():
                fns[name] = lambda x=x, c=client: c.infer(MODEL, {INPUT: x})
            res = interleaved(fns, n, warmup)
            base = summary(res["bare onnxruntime"], batch)
            inproc = summary(res["in-process"], batch)
            for name, samples in res.items():
                s = summary(samples, batch)
                if name == "bare onnxruntime":
                    ratio = "1.00 (baseline)"
                elif name == "in-process":
                    ratio = f"{s['p50_ms'] / base['p50_ms']:.2f} x bare"
                else:
                    ratio = f"{s['p50_ms'] / inproc['p50_ms']:.2f} x in-process"
                rows.append((name, batch, s, ratio))
    finally:
        for c in remotes.values():
            c.close()
        if triton is not None:
            triton.stop()

    print(f"\nmachine: {platform.machine()} {platform.system()}, python {platform.python_version()}, "
          f"onnxruntime {ort.__version__}, n={n} per contender and batch, 1 intra-op thread\n")
    print("| path | batch | p50 ms | p99 ms | req/s | images/s | median ratio |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, batch, s, ratio in rows:
        print(f"| {name} | {batch} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {s['req_s']:.0f} | "
              f"{s['img_s']:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
