"""The IG's ConceptMaps (generated into codemaps.json) and v2 coding-system names."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

# HL7 table 0396 / common coding system names -> FHIR system URIs.
SYSTEMS: dict[str, str] = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNM3": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "C4": "http://www.ama-assn.org/go/cpt",
    "UCUM": "http://unitsofmeasure.org",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://terminology.hl7.org/CodeSystem/MVX",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "NCIT": "http://ncithesaurus-stage.nci.nih.gov",
    "ISO3166": "urn:iso:std:iso:3166",
    "ISO639": "urn:ietf:bcp:47",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
    "HCPCS": "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "NUCC": "http://nucc.org/provider-taxonomy",
}


def system_uri(name: str) -> str | None:
    """A FHIR system for a v2 coding-system name; HL7nnnn tables map to terminology.hl7.org v2 CodeSystems."""
    n = name.strip()
    if not n:
        return None
    up = n.upper()
    if up in SYSTEMS:
        return SYSTEMS[up]
    if up.startswith("HL7") and up[3:].isdigit():
        return f"http://terminology.hl7.org/CodeSystem/v2-{int(up[3:]):04d}"
    if "://" in n or n.startswith("urn:"):
        return n
    return None


@cache
def _maps() -> dict[str, dict[str, dict[str, str]]]:
    data: dict[str, dict[str, dict[str, str]]] = json.loads(
        (Path(__file__).with_name("codemaps.json")).read_text(encoding="utf-8")
    )
    return data


def lookup(concept_map: str, code: str) -> dict[str, str] | None:
    """Translate a v2 code with one of the IG ConceptMaps (None when the map has no target)."""
    if not code:
        return None
    m = _maps().get(concept_map, {})
    return m.get(code) or m.get(code.upper())


def code_of(concept_map: str, code: str, default: str | None = None) -> str | None:
    hit = lookup(concept_map, code)
    return hit["code"] if hit else default


def coding_of(concept_map: str, code: str) -> dict[str, Any] | None:
    hit = lookup(concept_map, code)
    if not hit:
        return None
    out = {"system": hit["system"], "code": hit["code"]}
    if hit.get("display"):
        out["display"] = hit["display"]
    return out


def id_system(name: str) -> str:
    """A valid URI (``urn:id:...``) for an identifier namespace that has no OID or URL."""
    import re

    return "urn:id:" + (re.sub(r"[^A-Za-z0-9._~:-]+", "-", name.strip()).strip("-") or "unknown")
