"""Train the readmission-risk model on the Synthea corpus and export it to ONNX.

Every encounter is an index event; the label is an acute (inpatient or
emergency) encounter starting within 30 days after it ends. Features come from
``inference.features.readmission_features`` as of the index discharge, so
serving computes them the same way. Split by patient (no leakage across sets).

    .venv/bin/python -m inference.training.train_readmission [--corpus DIR] [--out REPO]
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from inference.features import FEATURE_NAMES, _class, _period, feature_vector, readmission_features
from inference.training.artifacts import REPOSITORY, install_wrapper, write_card
from inference.training.synthea import DEFAULT_CORPUS, load_patients

MODEL = "readmission_risk"
WINDOW = timedelta(days=30)
_ACUTE = ("IMP", "EMER")


def build_dataset(patients: list[dict[str, list[dict[str, Any]]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs: list[list[float]] = []
    ys: list[int] = []
    groups: list[int] = []
    for pid, resources in enumerate(patients):
        encs = sorted((e for e in resources.get("Encounter", []) if _period(e)[0] is not None),
                      key=lambda e: _period(e)[0])  # type: ignore[arg-type,return-value]
        for i, enc in enumerate(encs):
            end = _period(enc)[1]
            assert end is not None
            label = any(_class(f) in _ACUTE and end < (_period(f)[0] or end) <= end + WINDOW
                        for f in encs[i + 1:])
            xs.append(feature_vector(readmission_features(resources, as_of=end)))
            ys.append(int(label))
            groups.append(pid)
    return np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.int64), np.asarray(groups)


def config_text(gpu: bool) -> str:
    head = ('platform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"\n' if gpu
            else 'backend: "python"\n')
    tail = ("instance_group [ { count: 1 kind: KIND_GPU } ]\n"
            "dynamic_batching { max_queue_delay_microseconds: 200 }\n" if gpu else
            "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
            'parameters { key: "onnx_file" value { string_value: "model.onnx" } }\n')
    return (f'name: "{MODEL}"\n{head}max_batch_size: 256\n'
            f'input [ {{ name: "features" data_type: TYPE_FP32 dims: [ {len(FEATURE_NAMES)} ] }} ]\n'
            'output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
            'version_policy: { latest: { num_versions: 1 } }\n'
            f'parameters {{ key: "feature_names" value {{ string_value: "{",".join(FEATURE_NAMES)}" }} }}\n'
            + tail)


def train(corpus: Path, out: Path, version: int = 1) -> dict[str, Any]:
    import onnx
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import brier_score_loss, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    patients = load_patients(corpus)
    x, y, groups = build_dataset(patients)

    def make() -> Any:
        return RandomForestClassifier(n_estimators=100, max_depth=8, min_samples_leaf=10, random_state=0)

    # Out-of-fold predictions, folds grouped by patient so no patient is in train and test.
    oof = np.zeros(len(y), dtype=np.float64)
    for tr, te in StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0).split(x, y, groups):
        oof[te] = make().fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
    model = make().fit(x, y)
    metrics = {
        "auroc_cv5_grouped": round(float(roc_auc_score(y, oof)), 4),
        "brier_cv5_grouped": round(float(brier_score_loss(y, oof)), 4),
        "n_samples": len(y), "n_positive": int(y.sum()), "n_patients": len(patients),
    }
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    # Keep only the probabilities output; rename the graph's tensors to the config's names.
    graph = onx.graph
    old_in = graph.input[0].name
    for node in graph.node:
        node.input[:] = ["features" if n == old_in else n for n in node.input]
    graph.input[0].name = "features"
    keep = [o for o in graph.output if o.name == "probabilities"]
    del graph.output[:]
    graph.output.extend(keep)
    onx.producer_version = ""
    onnx.checker.check_model(onx)

    model_dir = out / MODEL
    version_dir = model_dir / str(version)
    (model_dir / "configs").mkdir(parents=True, exist_ok=True)
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "model.onnx").write_bytes(onx.SerializeToString())
    install_wrapper(version_dir)
    (model_dir / "config.pbtxt").write_text(config_text(gpu=False))
    (model_dir / "configs" / "gpu.pbtxt").write_text(config_text(gpu=True))
    write_card(model_dir, {
        "name": MODEL, "version": str(version), "task": "tabular-binary-classification",
        "demo_model": True,
        "description": "30-day acute readmission risk (inpatient or emergency encounter within 30 days "
                       "of an encounter's end) from LACE components, age, utilisation and Charlson "
                       "comorbidities computed from FHIR.",
        "intended_use": "Demonstration of CDS Hooks risk cards. Not validated for clinical use.",
        "training_data": f"Synthea R4 corpus ({len(patients)} synthetic patients, every encounter an index "
                         "event). Metrics: 5-fold cross-validation grouped by patient (out-of-fold predictions); "
                         "the shipped model is refit on all samples.",
        "algorithm": "random forest (100 trees, depth <= 8, >= 10 samples a leaf), scikit-learn -> skl2onnx; "
                     "logistic regression scored below chance in grouped cross-validation",
        "features": list(FEATURE_NAMES),
        "labels": ["no_readmission", "readmission_30d"],
        "metrics": metrics,
        "limitations": "Synthetic population, few positive events: probabilities are not calibrated "
                       "for any real population.",
    })
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--out", type=Path, default=REPOSITORY)
    args = ap.parse_args(argv)
    print(train(args.corpus, args.out))


if __name__ == "__main__":
    main()
