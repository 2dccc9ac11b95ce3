"""Writing repository artifacts: model cards and the python-backend wrapper."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
_WRAPPER = Path(__file__).resolve().parents[1] / "triton_python" / "onnx_model.py"


def write_card(model_dir: Path, card: dict[str, Any]) -> None:
    (model_dir / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


def install_wrapper(version_dir: Path) -> None:
    """Copy the ONNX Runtime python-backend wrapper as ``model.py`` (Triton's CPU/pytriton path)."""
    shutil.copyfile(_WRAPPER, version_dir / "model.py")

