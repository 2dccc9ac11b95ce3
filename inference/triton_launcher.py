"""Start the ``tritonserver`` binary shipped by ``nvidia-pytriton`` on our repository.

That binary (Triton 2.5x, python backend only) runs on the CPU, so tests and
benchmarks exercise the real Triton HTTP/gRPC servers with the python-backend
configs. It lives in its own virtual environment (default ``.venv-triton`` at
the repository root, or ``DIGITALFRONT_TRITON_VENV``) because its pins differ
from ours; that environment also needs ``onnxruntime`` for ``model.py``.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess  # noqa: S404 - we start a binary we located, with fixed arguments
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from inference.registry import DEFAULT_ROOT

REPO_ROOT = Path(__file__).resolve().parents[1]


class TritonUnavailable(RuntimeError):
    """The binary is absent or does not start here (the message says why)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pytriton(venv: Path | None = None) -> tuple[Path, Path, str]:
    """(pytriton package dir, venv, python version) or raise TritonUnavailable."""
    venv = venv or Path(os.environ.get("DIGITALFRONT_TRITON_VENV", REPO_ROOT / ".venv-triton"))
    hits = sorted(glob.glob(str(venv / "lib" / "python3.*" / "site-packages" / "pytriton")))
    if not hits:
        raise TritonUnavailable(f"nvidia-pytriton is not installed in {venv} "
                                f"(python3 -m venv {venv} && {venv}/bin/pip install nvidia-pytriton onnxruntime)")
    pkg = Path(hits[0])
    version = pkg.parents[1].name.removeprefix("python")
    if not (pkg / "tritonserver" / "bin" / "tritonserver").is_file():
        raise TritonUnavailable(f"{pkg} has no tritonserver binary")
    return pkg, venv, version


@dataclass
class TritonProcess:
    http_port: int
    grpc_port: int
    metrics_port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    models: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_triton(models: list[str], repository: Path = DEFAULT_ROOT, venv: Path | None = None,
                 startup_timeout_s: float = 120.0, config_name: str | None = None) -> TritonProcess:
    """Start tritonserver on free loopback ports with ``models`` loaded; wait until ready."""
    pkg, venv, pyver = find_pytriton(venv)
    workdir = Path(tempfile.mkdtemp(prefix="df-triton-"))
    server_dir = workdir / "tritonserver"
    shutil.copytree(pkg / "tritonserver", server_dir,
                    ignore=shutil.ignore_patterns("python_backend_stubs", "triton_python_backend_stub"))
    stub = pkg / "tritonserver" / "python_backend_stubs" / pyver / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonUnavailable(f"no python backend stub for Python {pyver} in {pkg}")
    shutil.copy(stub, server_dir / "backends" / "python" / "triton_python_backend_stub")
    libs = pkg.parent / "nvidia_pytriton.libs"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["OMP_NUM_THREADS"] = "1"
    http, grpc, prom = _free_port(), _free_port(), _free_port()
    args = [str(server_dir / "bin" / "tritonserver"), f"--model-repository={repository}",
            "--model-control-mode=explicit", f"--backend-directory={server_dir / 'backends'}",
            f"--cache-directory={server_dir / 'caches'}",
            "--http-address=127.0.0.1", f"--http-port={http}", "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc}", f"--metrics-port={prom}", "--allow-metrics=true",
            "--allow-gpu-metrics=false", "--log-verbose=0", "--strict-readiness=true",
            "--exit-timeout-secs=5", "--backend-config=python,shm-default-byte-size=4194304"]
    if config_name:
        args.append(f"--model-config-name={config_name}")
    args += [f"--load-model={m}" for m in models]
    log_path = workdir / "tritonserver.log"
    log_fh = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(args, stdout=log_fh, stderr=subprocess.STDOUT, env=env, cwd=workdir)  # noqa: S603
    tp = TritonProcess(http, grpc, prom, proc, workdir, log_path, list(models))
    atexit.register(tp.stop)  # never leave a server behind if the caller forgets or crashes
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = tp.log_tail()
            tp.stop()
            raise TritonUnavailable(f"tritonserver exited with {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"{tp.http_url}/v2/health/ready", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return tp
        except OSError:
            pass
        time.sleep(0.5)
    tail = tp.log_tail()
    tp.stop()
    raise TritonUnavailable(f"tritonserver not ready after {startup_timeout_s:.0f}s: {tail}")
