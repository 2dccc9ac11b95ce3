"""Generate the patient-compartment table embedded in ``fhir_server/authz.py``.

The running server has no ../shared, so the table derived from the official
CompartmentDefinition-patient and the R4 SearchParameter expressions is shipped
as Python source. Usage::

    .venv/bin/python -m smart_apps.tools.gen_compartment \\
        ../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from typing import Any

_WHERE = re.compile(r"\.where\([^()]*(\([^()]*\))?[^()]*\)")


def _paths(expression: str, resource_type: str) -> list[str]:
    out: list[str] = []
    for part in expression.split("|"):
        part = _WHERE.sub("", part.strip())
        if part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        m = re.fullmatch(r"\(?\s*([A-Za-z.]+)\s+as\s+Reference\s*\)?", part)
        if m:
            part = m.group(1)
        if not part.startswith(resource_type + "."):
            continue
        path = part[len(resource_type) + 1:]
        if re.fullmatch(r"[A-Za-z.]+", path) and path not in out:
            out.append(path)
    return out


def build(package_tgz: str) -> dict[str, list[str]]:
    with tarfile.open(package_tgz) as tar:
        comp = json.load(tar.extractfile("package/CompartmentDefinition-patient.json"))  # type: ignore[arg-type]
        bundle = json.load(tar.extractfile("package/Bundle-searchParams.json"))  # type: ignore[arg-type]
    params: dict[tuple[str, str], str] = {}
    for entry in bundle["entry"]:
        sp: dict[str, Any] = entry["resource"]
        for base in sp.get("base", []):
            if sp.get("expression"):
                params[(base, sp["code"])] = sp["expression"]
    table: dict[str, list[str]] = {}
    for res in comp["resource"]:
        paths: list[str] = []
        for code in res.get("param", []):
            if code == "{def}":
                continue
            expr = params.get((res["code"], code))
            if expr is None:
                continue
            for p in _paths(expr, res["code"]):
                if p not in paths:
                    paths.append(p)
        if paths:
            table[res["code"]] = paths
    return table


def table_params(package_tgz: str) -> dict[str, list[str]]:
    """Search parameter names per type, in CompartmentDefinition order."""
    with tarfile.open(package_tgz) as tar:
        comp = json.load(tar.extractfile("package/CompartmentDefinition-patient.json"))  # type: ignore[arg-type]
    return {r["code"]: [p for p in r["param"] if p != "{def}"] for r in comp["resource"] if r.get("param")}


def main() -> None:
    tgz = sys.argv[1]
    paths = build(tgz)
    params = table_params(tgz)
    print("PATIENT_COMPARTMENT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {")
    for rtype in sorted(paths):
        line = f"    {rtype!r}: ({tuple(params[rtype])!r}, {tuple(paths[rtype])!r}),"
        if len(line) > 110:
            line = f"    {rtype!r}: (\n        {tuple(params[rtype])!r},\n        {tuple(paths[rtype])!r}),"
        print(line)
    print("}")


if __name__ == "__main__":
    main()
