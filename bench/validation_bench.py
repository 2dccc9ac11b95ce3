"""Validation and XML format cost per resource, on the Synthea R4 corpus.

Figures (median of --repeat runs, microseconds per resource):
- validate_resource (the write path, model-driven) and strict ($validate);
- baselines in the same run: orjson loads+dumps of the same resources (the floor
  any write pays) and fhir.resources' R4B pydantic models (the alternative the
  issue allows), which we did not choose;
- XML render+parse vs JSON render+parse.

Run: .venv/bin/python bench/validation_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.formats import parse_json, render  # noqa: E402
from fhir_server.formats.xml import parse_xml, to_xml  # noqa: E402
from fhir_server.validation import validate_resource  # noqa: E402


def load(quick: bool) -> list[dict[str, Any]]:
    files = sorted((ROOT.parent / "shared" / "corpora" / "synthea-r4").glob("*.json.gz"))
    if not files:
        raise SystemExit("../shared/corpora/synthea-r4 not found")
    out: list[dict[str, Any]] = []
    for f in files[:4] if quick else files:
        out.extend(e["resource"] for e in json.loads(gzip.decompress(f.read_bytes()))["entry"])
    return out


def per_resource_us(fn: Callable[[dict[str, Any]], Any], resources: list[dict[str, Any]], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for r in resources:
            fn(r)
        runs.append((time.perf_counter() - t) / len(resources) * 1e6)
    return statistics.median(runs)


def r4b_model(r: dict[str, Any]) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(r["resourceType"]).model_validate(r)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="4 bundles instead of 74")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    resources = load(args.quick)
    validate_resource(resources[0])  # load the model once, outside the timings
    r4b_model(resources[0])
    rows = [
        ("baseline: orjson loads+dumps", per_resource_us(lambda r: orjson.loads(orjson.dumps(r)), resources,
                                                         args.repeat)),
        ("validate_resource (write path)", per_resource_us(validate_resource, resources, args.repeat)),
        ("validate_resource strict ($validate)",
         per_resource_us(lambda r: validate_resource(r, strict=True), resources, args.repeat)),
        ("fhir.resources R4B model_validate", per_resource_us(r4b_model, resources, args.repeat)),
        ("JSON render+parse", per_resource_us(lambda r: parse_json(render(r, "json")), resources, args.repeat)),
        ("XML render+parse", per_resource_us(lambda r: parse_xml(to_xml(r)), resources, args.repeat)),
    ]
    base = rows[0][1]
    print(f"{len(resources)} Synthea resources, median of {args.repeat} runs")
    print("| step | us/resource | vs orjson baseline |\n|---|---:|---:|")
    for name, us in rows:
        print(f"| {name} | {us:.1f} | {us / base:.1f}x |")


if __name__ == "__main__":
    main()
