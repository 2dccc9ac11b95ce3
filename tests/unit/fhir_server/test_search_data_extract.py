"""The shipped search-parameter, compartment and element-type extract is exactly what
scripts/build_search_data.py generates from the official R4 package: no hand-written parameter lists."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from terminology.packages import shared_package

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "fhir_server" / "search" / "data"


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("build_search_data", ROOT / "scripts" / "build_search_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_search_data_matches_the_generator() -> None:
    pkg = shared_package("hl7.fhir.r4.examples")
    if pkg is None:
        pytest.skip("../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz not available")
    docs, summary = _load_script().build(Path(pkg))
    assert sorted(f"{name}.json.gz" for name in docs) == sorted(p.name for p in DATA.glob("*.json.gz"))
    for name, doc in docs.items():
        shipped = json.loads(gzip.decompress((DATA / f"{name}.json.gz").read_bytes()))
        assert shipped == json.loads(json.dumps(doc)), f"{name} is stale: run scripts/build_search_data.py"
    params = docs["search-parameters"]
    assert len(params) > 1300 and summary.startswith(f"{len(params)} search parameters")
