"""The model repository (Triton layout) as a registry: models, versions, cards.

``<root>/<model>/config.pbtxt`` (served by the CPU/pytriton Triton and the
in-process backend), ``<root>/<model>/configs/*.pbtxt`` (GPU-native configs
selected with ``tritonserver --model-config-name``), numbered version folders
and a ``model_card.json``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.config import ModelConfig, ModelConfigError, load_config

log = logging.getLogger(__name__)
DEFAULT_ROOT = Path(__file__).resolve().parent / "model_repository"


def repository_root(settings_like: Any = None) -> Path:
    """Settings ``extra['model_repository']``, then ``DIGITALFRONT_MODEL_REPOSITORY``, then the shipped one."""
    extra = getattr(settings_like, "extra", None) or {}
    raw = extra.get("model_repository") or os.environ.get("DIGITALFRONT_MODEL_REPOSITORY")
    return Path(raw) if raw else DEFAULT_ROOT


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    config: ModelConfig
    versions: tuple[int, ...]  # all present on disk, ascending
    card: dict[str, Any] = field(default_factory=dict)
    alt_configs: dict[str, ModelConfig] = field(default_factory=dict)

    @property
    def served_versions(self) -> tuple[int, ...]:
        """Versions Triton would load under the config's version_policy (default: latest 1)."""
        if self.config.version_policy == "all":
            return self.versions
        return self.versions[-1:] if self.versions else ()

    def resolve_version(self, version: str | int | None) -> int:
        if version in (None, "", "latest"):
            if not self.served_versions:
                raise LookupError(f"model {self.name} has no version folder")
            return self.served_versions[-1]
        try:
            v = int(version)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise LookupError(f"model {self.name}: version {version!r} is not a number") from exc
        if v not in self.versions:
            raise LookupError(f"model {self.name} has no version {v} (has {list(self.versions)})")
        return v

    def version_dir(self, version: str | int | None = None) -> Path:
        return self.path / str(self.resolve_version(version))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [str(v) for v in self.versions],
            "latest": str(self.served_versions[-1]) if self.served_versions else None,
            "backend": self.config.backend or self.config.platform,
            "max_batch_size": self.config.max_batch_size,
            "inputs": [t.to_json() for t in self.config.inputs],
            "outputs": [t.to_json() for t in self.config.outputs],
            "deployment_configs": {k: {"platform": c.platform or c.backend, "instance_kind": c.instance_kind,
                                       "dynamic_batching": c.dynamic_batching}
                                   for k, c in sorted(self.alt_configs.items())},
            "demo_model": bool(self.card.get("demo_model", False)),
            "card": self.card,
        }


class ModelRegistry:
    def __init__(self, root: Path | str = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self._models: dict[str, ModelInfo] | None = None
        self.errors: dict[str, str] = {}  # model folder -> why it is not served

    def _scan(self) -> dict[str, ModelInfo]:
        """Every model folder; one that is broken is left out and reported, not fatal to the rest."""
        models: dict[str, ModelInfo] = {}
        self.errors = {}
        if not self.root.is_dir():
            return models
        for cfg_path in sorted(self.root.glob("*/config.pbtxt")):
            try:
                info = self._load(cfg_path)
            except (ModelConfigError, ValueError, OSError) as exc:
                log.error("model %s is not served: %s", cfg_path.parent.name, exc)
                self.errors[cfg_path.parent.name] = str(exc)
                continue
            models[info.name] = info
        return models

    @staticmethod
    def _load(cfg_path: Path) -> ModelInfo:
        model_dir = cfg_path.parent
        config = load_config(cfg_path)
        if config.name != model_dir.name:
            raise ModelConfigError(f"{cfg_path}: name {config.name!r} differs from folder {model_dir.name!r}")
        versions = tuple(sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()))
        card_path = model_dir / "model_card.json"
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
        alt = {p.stem: load_config(p) for p in sorted((model_dir / "configs").glob("*.pbtxt"))}
        return ModelInfo(model_dir.name, model_dir, config, versions, card, alt)

    def models(self) -> dict[str, ModelInfo]:
        if self._models is None:
            self._models = self._scan()
        return self._models

    def reload(self) -> None:
        self._models = None

    def get(self, name: str) -> ModelInfo:
        try:
            return self.models()[name]
        except KeyError:
            raise LookupError(f"unknown model {name!r}; known: {sorted(self.models())}") from None

    def list(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.models().values()]


_default: dict[Path, ModelRegistry] = {}


def registry(root: Path | str | None = None) -> ModelRegistry:
    """A shared registry per repository root (scanning is cheap but not free)."""
    key = Path(root) if root else DEFAULT_ROOT
    if key not in _default:
        _default[key] = ModelRegistry(key)
    return _default[key]


def list_models(root: Path | str | None = None) -> list[dict[str, Any]]:
    return registry(root).list()
