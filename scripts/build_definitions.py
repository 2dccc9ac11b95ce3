"""Generate the compact R4 type model shipped in ``fhir_server/definitions/data/``.

Input: the official ``hl7.fhir.r4.examples`` 4.0.1 package (StructureDefinitions,
ValueSets, CodeSystems). Output (deterministic gzipped JSON, so a test can check
the shipped copy matches what this script produces):

- ``types.json.gz``: for every base resource and datatype (specializations, so
  no profiles) its element paths in snapshot order with types, cardinality,
  isSummary/isModifier, binding, contentReference, and the regex of primitives.
- ``extensions.json.gz``: each core extension's context and allowed value types,
  and the type/base of each core SearchParameter (to check ``derivedFrom``).
- ``valuesets.json.gz``: the codes of every required-binding value set that is
  closed and expandable from the package alone (explicit concept lists, whole
  complete CodeSystems, and included value sets); others are left out and
  therefore left to the terminology service.

Run: ``.venv/bin/python scripts/build_definitions.py [PACKAGE.tgz]``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from terminology.packages import iter_resources, shared_package  # noqa: E402

OUT_DIR = ROOT / "fhir_server" / "definitions" / "data"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}


def _type_code(t: dict[str, Any]) -> str:
    for ext in t.get("extension", []):
        if ext.get("url") == FHIR_TYPE_EXT:
            return str(ext.get("valueUrl") or ext.get("valueUri"))
    code = str(t["code"])
    return SYSTEM_TYPES.get(code, code)


def _element(e: dict[str, Any]) -> list[Any]:
    """[path, types, min, max, flags, binding-strength, valueSet, contentReference, targets]."""
    types = [_type_code(t) for t in e.get("type", [])]
    targets: list[str] = []
    for t in e.get("type", []):
        for prof in t.get("targetProfile", []):
            targets.append(prof.rsplit("/", 1)[-1])
    flags = ("s" if e.get("isSummary") else "") + ("m" if e.get("isModifier") else "") + \
        ("a" if "xmlAttr" in e.get("representation", []) else "")
    binding = e.get("binding") or {}
    vs = binding.get("valueSet")
    return [e["path"], types, int(e.get("min", 0)), str(e.get("max", "*")), flags,
            binding.get("strength"), vs.split("|", 1)[0] if vs else None,
            (e.get("contentReference") or "").lstrip("#") or None, sorted(set(targets))]


def build_types(sds: list[dict[str, Any]]) -> dict[str, Any]:
    types: dict[str, Any] = {}
    for sd in sorted(sds, key=lambda d: str(d["type"])):
        if sd.get("derivation") not in ("specialization", None) or sd.get("kind") == "logical":
            continue
        if sd["url"] != f"http://hl7.org/fhir/StructureDefinition/{sd['type']}":
            continue
        entry: dict[str, Any] = {
            "kind": sd["kind"],
            "abstract": bool(sd.get("abstract")),
            "base": (sd.get("baseDefinition") or "").rsplit("/", 1)[-1] or None,
            "elements": [],
        }
        for e in sd["snapshot"]["element"]:
            if "." not in e["path"]:
                continue
            if sd["kind"] == "primitive-type" and e["path"].endswith(".value"):
                for t in e.get("type", []):
                    for ext in t.get("extension", []):
                        if ext.get("url") == REGEX_EXT:
                            entry["regex"] = ext["valueString"]
            entry["elements"].append(_element(e))
        types[sd["type"]] = entry
    return types


def _all_codes(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        out.append(c["code"])
        out.extend(_all_codes(c.get("concept", [])))
    return out


def _expand(url: str, valuesets: dict[str, Any], codesystems: dict[str, Any],
            seen: frozenset[str] = frozenset()) -> dict[str, list[str]] | None:
    """Expand a value set to {system: codes}, or None when it is not closed/expandable here."""
    vs = valuesets.get(url)
    if vs is None or url in seen or "compose" not in vs:
        return None
    compose = vs["compose"]
    if compose.get("exclude"):
        return None
    result: dict[str, set[str]] = {}
    for inc in compose.get("include", []):
        if inc.get("filter"):
            return None
        part: dict[str, set[str]] = {}
        system = inc.get("system")
        if system:
            if inc.get("concept"):
                part[system] = {c["code"] for c in inc["concept"]}
            else:
                cs = codesystems.get(system)
                if cs is None or cs.get("content") != "complete":
                    return None
                part[system] = set(_all_codes(cs.get("concept", [])))
        for ref in inc.get("valueSet", []):
            sub = _expand(ref.split("|", 1)[0], valuesets, codesystems, seen | {url})
            if sub is None:
                return None
            if part:  # system AND valueSet: intersection
                part = {s: part[s] & set(sub.get(s, [])) for s in part}
            else:
                part = {s: set(c) for s, c in sub.items()}
        for s, codes in part.items():
            result.setdefault(s, set()).update(codes)
    return {s: sorted(c) for s, c in sorted(result.items())}


def build_valuesets(types: dict[str, Any], valuesets: dict[str, Any],
                    codesystems: dict[str, Any]) -> dict[str, Any]:
    urls = sorted({el[6] for t in types.values() for el in t["elements"] if el[5] == "required" and el[6]})
    out: dict[str, Any] = {}
    for url in urls:
        exp = _expand(url, valuesets, codesystems)
        if exp is not None:
            out[url] = exp
    return out


def build_extensions(sds: list[dict[str, Any]]) -> dict[str, Any]:
    """Core extension definitions: where each may be used and which value types it allows."""
    out: dict[str, Any] = {}
    for sd in sorted(sds, key=lambda d: str(d["url"])):
        if sd.get("type") != "Extension" or sd.get("derivation") != "constraint":
            continue
        contexts = sorted({f"{c.get('type')}:{c.get('expression')}" for c in sd.get("context", [])})
        value_types: list[str] = []
        complex_ext = False
        for e in sd["snapshot"]["element"]:
            if e["path"] == "Extension.value[x]":
                if e.get("max") == "0":
                    complex_ext = True
                else:
                    value_types = [_type_code(t) for t in e.get("type", [])]
        out[sd["url"]] = {"context": contexts, "types": [] if complex_ext else value_types,
                          "modifier": any(e.get("isModifier") for e in sd["snapshot"]["element"]
                                          if e["path"] == "Extension")}
    return out


def build_search_params(sps: list[dict[str, Any]]) -> dict[str, Any]:
    """Type and base of each core SearchParameter (for derivedFrom and CapabilityStatement checks)."""
    return {sp["url"]: {"type": sp.get("type"), "base": sorted(sp.get("base", []))}
            for sp in sorted(sps, key=lambda d: str(d["url"]))}


def build(package: str | Path | None = None) -> dict[str, Any]:
    """Return {file name: JSON document} for everything under ``definitions/data``."""
    pkg = package or shared_package("hl7.fhir.r4.examples")
    if pkg is None:
        raise SystemExit("hl7.fhir.r4.examples package not found (expected in ../shared/fhir-packages)")
    sds, sps, valuesets, codesystems = [], [], {}, {}
    for res in iter_resources(pkg, {"StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter"}):
        rt = res["resourceType"]
        if rt == "StructureDefinition":
            sds.append(res)
        elif rt == "SearchParameter":
            sps.append(res)
        elif rt == "ValueSet":
            valuesets[res["url"]] = res
        else:
            codesystems[res["url"]] = res
    types = build_types(sds)
    return {
        "types.json.gz": {"fhirVersion": "4.0.1", "types": types},
        "extensions.json.gz": {"fhirVersion": "4.0.1", "extensions": build_extensions(sds),
                               "searchParameters": build_search_params(sps)},
        "valuesets.json.gz": {"fhirVersion": "4.0.1",
                              "valuesets": build_valuesets(types, valuesets, codesystems)},
    }


def encode(doc: Any) -> bytes:
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return gzip.compress(raw, compresslevel=9, mtime=0)


def main(argv: list[str]) -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, doc in build(argv[1] if len(argv) > 1 else None).items():
        data = encode(doc)
        (OUT_DIR / name).write_bytes(data)
        print(f"wrote {OUT_DIR / name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
