"""Load the Synthea transaction bundles as per-patient resource maps."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "synthea-r4"


def load_patients(corpus: Path = DEFAULT_CORPUS) -> list[dict[str, list[dict[str, Any]]]]:
    """One ``{resourceType: [resources]}`` map per bundle (Synthea: one patient per bundle)."""
    files = sorted(Path(corpus).glob("*.json.gz"))
    if not files:
        raise FileNotFoundError(f"no Synthea bundles under {corpus}")
    patients = []
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            bundle = json.load(fh)
        by_type: dict[str, list[dict[str, Any]]] = {}
        for entry in bundle.get("entry", []):
            res = entry.get("resource") or {}
            by_type.setdefault(res.get("resourceType", ""), []).append(res)
        patients.append(by_type)
    return patients
