"""Generate the shipped search-parameter extract from the official R4 package.

Reads every SearchParameter and CompartmentDefinition of ``hl7.fhir.r4.examples``
and compiles each FHIRPath expression part into simple navigation steps using
the element types of the StructureDefinitions, so the server can extract index
values without a FHIRPath engine for the common shapes (the rest keep their
expression and go to fhirpathpy). Output: fhir_server/search/data/*.json.gz

    python scripts/build_search_data.py [PATH-TO-hl7.fhir.r4.examples.tgz]
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.search.compile import compile_part  # noqa: E402
from terminology.packages import iter_resources, shared_package  # noqa: E402

OUT = ROOT / "fhir_server" / "search" / "data"

Elements = dict[str, dict[str, list[str]]]


def load_types(pkg: Path) -> tuple[Elements, set[str]]:
    types: Elements = {}
    resources: set[str] = set()
    sds = [sd for sd in iter_resources(pkg, {"StructureDefinition"})
           if sd.get("derivation") == "specialization" and sd.get("kind") in ("resource", "complex-type")]
    for sd in sds:
        name = sd["type"]
        if sd["kind"] == "resource":
            resources.add(name)
        paths: dict[str, list[str]] = {}
        refs: dict[str, str] = {}
        for el in sd["snapshot"]["element"]:
            path: str = el["path"]
            if "." not in path:
                continue
            rel = path.split(".", 1)[1]
            if "contentReference" in el:
                refs[rel] = el["contentReference"].split("#", 1)[1].split(".", 1)[1]
                paths[rel] = ["BackboneElement"]
                continue
            codes = []
            for t in el.get("type", []):
                code = t["code"]
                if code.startswith("http://hl7.org/fhirpath/System."):
                    code = "string" if rel.endswith("id") or code.endswith("String") else code.rsplit(".", 1)[1].lower()
                codes.append(code)
            paths[rel] = codes
        # expand contentReference (e.g. Questionnaire.item.item -> item.*) two levels deep
        for _ in range(2):
            for rel, target in list(refs.items()):
                for p, codes in list(paths.items()):
                    if p.startswith(target + "."):
                        paths.setdefault(rel + p[len(target):], codes)
        types[name] = paths
    return types, resources


def build(pkg: Path) -> tuple[dict[str, object], str]:
    """The three documents (file stem -> JSON data) and a one-line summary; ``main`` writes them."""
    types, resources = load_types(pkg)
    params = []
    n_parts = n_compiled = 0
    for sp in iter_resources(pkg, {"SearchParameter"}):
        if "base" not in sp or not sp.get("url", "").startswith("http://hl7.org/fhir/SearchParameter/"):
            continue  # examples of custom parameters, not part of the base specification
        expr = sp.get("expression") or ""
        parts = []
        for raw in expr.split(" | ") if expr else []:
            n_parts += 1
            compiled = compile_part(raw, types)
            if compiled:
                n_compiled += 1
                parts.append(compiled)
            else:
                root = re.match(r"\(?(\w+)", raw.strip())
                parts.append({"resource": root.group(1) if root else None, "fhirpath": raw.strip()})
        params.append({
            "url": sp["url"], "code": sp["code"], "base": sp["base"], "type": sp["type"],
            "expression": expr, "target": sp.get("target", []), "modifier": sp.get("modifier", []),
            "comparator": sp.get("comparator", []), "multipleOr": sp.get("multipleOr", True),
            "multipleAnd": sp.get("multipleAnd", True),
            "component": [{"definition": c["definition"], "expression": c["expression"]}
                          for c in sp.get("component", [])],
            "parts": parts,
        })
    compartments = []
    for cd in iter_resources(pkg, {"CompartmentDefinition"}):
        if cd["id"] == "example":
            continue
        compartments.append({
            "code": cd["code"], "url": cd["url"],
            "resource": {r["code"]: r.get("param", []) for r in cd.get("resource", [])},
        })
    # element types of the resources and datatypes, needed to compile custom SearchParameters at run time
    docs: dict[str, object] = {"search-parameters": params, "compartments": compartments,
                               "element-types": {"types": types, "resources": sorted(resources)}}
    return docs, (f"{len(params)} search parameters, {n_compiled}/{n_parts} expression parts compiled, "
                  f"{len(compartments)} compartments, {len(types)} types")


def main() -> None:
    pkg_arg = sys.argv[1] if len(sys.argv) > 1 else shared_package("hl7.fhir.r4.examples")
    if not pkg_arg:
        raise SystemExit("hl7.fhir.r4.examples package not found; pass its path")
    docs, summary = build(Path(pkg_arg))
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in docs.items():
        with gzip.open(OUT / f"{name}.json.gz", "wt", encoding="utf-8", compresslevel=9) as fh:
            json.dump(data, fh, separators=(",", ":"), sort_keys=True)
    print(summary)


if __name__ == "__main__":
    main()
