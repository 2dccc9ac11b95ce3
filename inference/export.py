"""Package the model repository for a Triton deployment."""

from __future__ import annotations

import shutil
from pathlib import Path

from inference.config import load_config
from inference.registry import DEFAULT_ROOT, ModelRegistry


def export_repository(out: Path, models: list[str] | None = None, root: Path = DEFAULT_ROOT,
                      flatten: str | None = None) -> list[str]:
    """Copy models (all by default) to ``out`` in Triton's layout.

    ``flatten="gpu"`` makes each model's ``configs/gpu.pbtxt`` its ``config.pbtxt`` (for servers
    started without ``--model-config-name``); models without that config keep their default.
    """
    reg = ModelRegistry(root)
    names = models or sorted(reg.models())
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        info = reg.get(name)
        dest = out / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(info.path, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if flatten:
            alt = dest / "configs" / f"{flatten}.pbtxt"
            if alt.is_file():
                shutil.copyfile(alt, dest / "config.pbtxt")
                load_config(dest / "config.pbtxt")  # still valid after the swap
        written.append(name)
    return written
