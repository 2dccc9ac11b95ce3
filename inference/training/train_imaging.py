"""Train the compact imaging CNN on generated phantoms; export ONNX + TorchScript.

Demo model: "nodule-like opacity present" on 64x64 chest-radiograph-like
phantoms (``inference.training.phantoms``). Seeded; one CPU thread so the
exported files are reproducible.

    .venv/bin/python -m inference.training.train_imaging [--out REPO] [--epochs N]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from inference.training.artifacts import REPOSITORY, install_wrapper, write_card
from inference.training.phantoms import SIZE, dataset

MODEL = "imaging_cnn"
INPUT, OUTPUT = "image__0", "probabilities__0"  # libtorch backend's <name>__<index> convention
LABELS = ["no_finding", "nodule"]
MAX_BATCH = 32


def config_text(kind: str) -> str:
    """``cpu`` = python backend wrapper; ``gpu`` = onnxruntime_onnx; ``gpu_libtorch`` = TorchScript."""
    head = {
        "cpu": 'backend: "python"\n',
        "gpu": 'platform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"\n',
        "gpu_libtorch": 'platform: "pytorch_libtorch"\ndefault_model_filename: "model.pt"\n',
    }[kind]
    tail = ('instance_group [ { count: 1 kind: KIND_CPU } ]\n'
            'parameters { key: "onnx_file" value { string_value: "model.onnx" } }\n' if kind == "cpu" else
            'instance_group [ { count: 1 kind: KIND_GPU } ]\n'
            'dynamic_batching { preferred_batch_size: [ 8, 16, 32 ] max_queue_delay_microseconds: 500 }\n')
    return (f'name: "{MODEL}"\n{head}max_batch_size: {MAX_BATCH}\n'
            f'input [ {{ name: "{INPUT}" data_type: TYPE_FP32 dims: [ 1, {SIZE}, {SIZE} ] }} ]\n'
            f'output [ {{ name: "{OUTPUT}" data_type: TYPE_FP32 dims: [ {len(LABELS)} ] }} ]\n'
            'version_policy: { latest: { num_versions: 1 } }\n'
            f'parameters {{ key: "labels" value {{ string_value: "{",".join(LABELS)}" }} }}\n'
            f'parameters {{ key: "positive_label" value {{ string_value: "{LABELS[1]}" }} }}\n' + tail)


def build_net() -> Any:
    import torch
    from torch import nn

    class CompactCnn(nn.Module):
        """~10k parameters: three conv blocks, global average pool, linear, softmax."""

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            )
            self.head = nn.Linear(32, len(LABELS))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.features(x).amax(dim=(2, 3))  # max pool: a small focal finding must not average away
            return torch.softmax(self.head(h), dim=1)

    return CompactCnn()


def train(out: Path, epochs: int = 8, n_train: int = 4000, version: int = 1) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_tr, y_tr = dataset(n_train, seed=1)
    x_te, y_te = dataset(1000, seed=2)
    net = build_net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            probs = net(xt[idx])
            loss = torch.nn.functional.nll_loss(torch.log(probs.clamp_min(1e-7)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        p = net(torch.from_numpy(x_te))[:, 1].numpy()
    from sklearn.metrics import roc_auc_score

    metrics = {"accuracy_test": round(float(((p >= 0.5) == (y_te == 1)).mean()), 4),
               "auroc_test": round(float(roc_auc_score(y_te, p)), 4),
               "n_train": n_train, "n_test": len(y_te), "epochs": epochs}

    model_dir = out / MODEL
    version_dir = model_dir / str(version)
    (model_dir / "configs").mkdir(parents=True, exist_ok=True)
    version_dir.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 1, SIZE, SIZE)
    tmp = version_dir / "model.onnx.tmp"
    torch.onnx.export(net, (example,), str(tmp), dynamo=False, input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=17)
    import onnx

    onx = onnx.load(str(tmp))
    tmp.unlink()
    onx.producer_version = ""
    onnx.checker.check_model(onx)
    (version_dir / "model.onnx").write_bytes(onx.SerializeToString())
    traced = torch.jit.trace(net, example)
    traced.save(str(version_dir / "model.pt"))
    install_wrapper(version_dir)
    (model_dir / "config.pbtxt").write_text(config_text("cpu"))
    for kind in ("gpu", "gpu_libtorch"):
        (model_dir / "configs" / f"{kind}.pbtxt").write_text(config_text(kind))
    write_card(model_dir, {
        "name": MODEL, "version": str(version), "task": "image-classification",
        "demo_model": True,
        "description": "Compact CNN (4 conv layers, ~16k parameters) that flags a nodule-like focal "
                       "opacity on a 2-D radiograph or slice resized to 64x64 and windowed to [0, 1].",
        "intended_use": "Demonstration of the imaging pipeline (DICOM -> model -> DiagnosticReport). "
                        "Trained only on synthetic phantoms: its output on real images is meaningless.",
        "training_data": f"{n_train} synthetic chest-radiograph-like phantoms generated by "
                         "inference/training/phantoms.py (seed 1), half with a Gaussian nodule; "
                         "test set 1000 phantoms (seed 2).",
        "inputs": {INPUT: "FP32 [N, 1, 64, 64], values in [0, 1]"},
        "outputs": {OUTPUT: f"FP32 [N, 2] softmax over {LABELS}"},
        "labels": LABELS, "metrics": metrics,
        "formats": {"onnx": "1/model.onnx", "torchscript": "1/model.pt"},
        "limitations": "Not trained or validated on any real image; demo model only.",
    })
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=REPOSITORY)
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args(argv)
    print(train(args.out, epochs=args.epochs))


if __name__ == "__main__":
    main()
