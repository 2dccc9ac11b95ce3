"""``digitalfront models list|train|export|evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from inference.registry import DEFAULT_ROOT, ModelRegistry


@click.group("models")
def models() -> None:
    """The model repository: list, train, export for Triton, evaluate."""


@models.command("list")
@click.option("--repository", type=click.Path(path_type=Path), default=DEFAULT_ROOT, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def list_cmd(repository: Path, as_json: bool) -> None:
    """Models, versions, backends and card summaries."""
    entries = ModelRegistry(repository).list()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for m in entries:
        demo = " [demo model]" if m["demo_model"] else ""
        gpu = ", ".join(sorted(m["deployment_configs"])) or "-"
        click.echo(f"{m['name']}  versions={','.join(m['versions'])}  backend={m['backend']}  "
                   f"gpu-configs={gpu}{demo}")
        task = m["card"].get("task")
        if task:
            click.echo(f"    task: {task}; metrics: {json.dumps(m['card'].get('metrics', {}))}")


@models.command("train")
@click.argument("model", type=click.Choice(["imaging_cnn", "readmission_risk"]))
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_ROOT, show_default=True)
@click.option("--corpus", type=click.Path(path_type=Path), default=None,
              help="Synthea corpus (readmission_risk); default ../shared/corpora/synthea-r4.")
@click.option("--epochs", type=int, default=8, show_default=True, help="imaging_cnn only.")
def train_cmd(model: str, out: Path, corpus: Path | None, epochs: int) -> None:
    """Retrain and export into the repository (needs the 'train' extra)."""
    try:
        if model == "imaging_cnn":
            from inference.training.train_imaging import train as train_imaging

            metrics = train_imaging(out, epochs=epochs)
        else:
            from inference.training.synthea import DEFAULT_CORPUS
            from inference.training.train_readmission import train as train_readmission

            metrics = train_readmission(corpus or DEFAULT_CORPUS, out)
    except ImportError as exc:
        raise click.ClickException(f"training needs the 'train' extra (pip install -e '.[train]'): {exc}") from exc
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(metrics))


@models.command("export")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Target Triton model repository.")
@click.option("--model", "names", multiple=True, help="Model to export (repeatable; default all).")
@click.option("--flatten", default=None, help="Make configs/<NAME>.pbtxt the config.pbtxt (e.g. gpu).")
@click.option("--repository", type=click.Path(path_type=Path), default=DEFAULT_ROOT, show_default=True)
def export_cmd(out: Path, names: tuple[str, ...], flatten: str | None, repository: Path) -> None:
    """Copy the repository (or some models) for a Triton deployment."""
    from inference.export import export_repository

    try:
        written = export_repository(out, list(names) or None, repository, flatten)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"exported {', '.join(written)} to {out}")


@models.command("evaluate")
@click.argument("model", type=click.Choice(["imaging_cnn", "readmission_risk"]))
@click.option("--backend", default="inprocess", show_default=True, help="inprocess | triton")
@click.option("--triton-url", default="", help="http://host:8000 or grpc://host:8001")
@click.option("--samples", type=int, default=500, show_default=True, help="imaging_cnn: fresh phantoms.")
@click.option("--corpus", type=click.Path(path_type=Path), default=None)
def evaluate_cmd(model: str, backend: str, triton_url: str, samples: int, corpus: Path | None) -> None:
    """Score a model through a backend on data it was not trained on (imaging) or the corpus (readmission)."""
    from inference import get_model_client

    client = get_model_client({"inference_backend": backend, "triton_url": triton_url})
    if model == "imaging_cnn":
        from inference.training.phantoms import dataset

        x, y = dataset(samples, seed=99)
        p = _batched(client, model, "image__0", x, "probabilities__0", 32)
    else:
        from inference.training.synthea import DEFAULT_CORPUS, load_patients
        from inference.training.train_readmission import build_dataset

        try:
            x, y, _ = build_dataset(load_patients(corpus or DEFAULT_CORPUS))
        except FileNotFoundError as exc:
            raise click.ClickException(str(exc)) from exc
        p = _batched(client, model, "features", x, "probabilities", 256)
    click.echo(json.dumps({"model": model, "backend": client.backend, "n": int(len(y)),
                           "accuracy": round(float(((p >= 0.5) == (y == 1)).mean()), 4),
                           "auroc": round(_auroc(p, y), 4)}))


def _batched(client: Any, model: str, name: str, x: np.ndarray, out: str, batch: int) -> np.ndarray:
    return np.concatenate([client.infer(model, {name: x[i:i + batch]})[out][:, 1] for i in range(0, len(x), batch)])


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count half), so evaluation needs no scikit-learn."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
