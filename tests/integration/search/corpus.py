"""The differential corpus: Synthea patients plus the official R4 examples, as plain JSON.

Synthea transaction bundles reference entries by ``urn:uuid``; we turn each entry into a
PUT with the uuid as id and rewrite the references to ``Type/uuid`` ourselves, so the JSON the
evaluator sees is exactly the JSON the server stored (nothing server-assigned).
"""

from __future__ import annotations

import gzip
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from tests.conftest import shared_path

JsonDict = dict[str, Any]
SYNTHEA_BUNDLES = 10
CONFORMANCE = {"StructureDefinition", "SearchParameter", "ValueSet", "CodeSystem", "ConceptMap",
               "OperationDefinition", "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide",
               "NamingSystem", "StructureMap", "MessageDefinition", "GraphDefinition", "TerminologyCapabilities",
               "Bundle"}
UUID_RE = re.compile(r'"urn:uuid:([0-9a-f-]{36})"')


def synthea_resources(n: int = SYNTHEA_BUNDLES) -> list[JsonDict]:
    folder = shared_path("corpora", "synthea-r4")
    out: dict[tuple[str, str], JsonDict] = {}
    for path in sorted(folder.glob("*.json.gz"))[:n]:
        bundle = json.loads(gzip.open(path).read())
        types = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
        for entry in bundle["entry"]:
            res = dict(entry["resource"])
            res["id"] = entry["fullUrl"].removeprefix("urn:uuid:")
            text = UUID_RE.sub(lambda m: '"' + types[f"urn:uuid:{m.group(1)}"] + "/" + m.group(1) + '"',
                               json.dumps(res))
            fixed = json.loads(text)
            out[(fixed["resourceType"], fixed["id"])] = fixed
    return list(out.values())


def example_resources() -> list[JsonDict]:
    path = shared_path("fhir-packages", "hl7.fhir.r4.examples-4.0.1.tgz")
    out = []
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            name = m.name.rsplit("/", 1)[-1]
            if not m.isfile() or not name.endswith(".json") or name in ("package.json", ".index.json"):
                continue
            if name.split("-", 1)[0] in CONFORMANCE:
                continue
            fh = tar.extractfile(m)
            assert fh is not None
            res = json.load(fh)
            if isinstance(res, dict) and res.get("resourceType") not in CONFORMANCE | {None} and res.get("id"):
                out.append(res)
    return out


def edge_resources() -> list[JsonDict]:
    """What neither Synthea nor the R4 examples contain, for search features that would otherwise be checked
    only against empty results: an accented name, identifiers holding ``|`` and ``$``, a ``meta.source``, a
    code without a system and an activity scheduled as a Timing."""
    return [
        {"resourceType": "Patient", "id": "edge-jose", "meta": {"source": "http://hospital.example/ehr#feed1"},
         "name": [{"family": "Núñez", "given": ["José"]}], "generalPractitioner": [{"reference": "Practitioner/example"}],
         "identifier": [{"system": "urn:edge", "value": "a|b"}, {"system": "urn:edge", "value": "x$y"}]},
        {"resourceType": "Observation", "id": "edge-nosys", "status": "final",
         "code": {"coding": [{"code": "edge-local-1"}], "text": "a local code"},
         "subject": {"reference": "Patient/edge-jose"}, "encounter": {"reference": "Encounter/edge-visit"}},
        {"resourceType": "Encounter", "id": "edge-visit", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": {"reference": "Patient/edge-jose"}},
        {"resourceType": "CarePlan", "id": "edge-timing", "status": "active", "intent": "plan",
         "subject": {"reference": "Patient/edge-jose"},
         "activity": [{"detail": {"status": "scheduled",
                                  "scheduledTiming": {"event": ["2030-05-01T10:00:00Z"]}}}]},
    ]


def search_parameters() -> dict[tuple[str, str], JsonDict]:
    """(resource type, code) -> the official SearchParameter, read straight from the package."""
    path = shared_path("fhir-packages", "hl7.fhir.r4.examples-4.0.1.tgz")
    with tarfile.open(path, "r:gz") as tar:
        fh = tar.extractfile("package/Bundle-searchParams.json")
        assert fh is not None
        bundle = json.load(fh)
    out: dict[tuple[str, str], JsonDict] = {}
    for e in bundle["entry"]:
        sp = e["resource"]
        for base in sp.get("base", []):
            out[(base, sp["code"])] = sp
    return out


def package_resource(name: str) -> JsonDict:
    path = shared_path("fhir-packages", "hl7.fhir.r4.examples-4.0.1.tgz")
    with tarfile.open(path, "r:gz") as tar:
        fh = tar.extractfile(f"package/{name}")
        assert fh is not None
        data: JsonDict = json.load(fh)
        return data


def load(services: Any, resources: list[JsonDict]) -> list[JsonDict]:
    """PUT everything in batches; returns the resources the server accepted (the evaluator's world)."""
    from fhir_server.model import FhirRequest

    accepted: list[JsonDict] = []
    for i in range(0, len(resources), 200):
        chunk = resources[i:i + 200]
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in chunk]}
        resp = services.router.handle(FhirRequest("POST", "", resource=bundle))
        assert resp.status == 200, resp.resource
        for r, e in zip(chunk, resp.resource["entry"], strict=True):
            if e["response"]["status"].startswith("20"):
                accepted.append(r)
    return accepted


def root() -> Path:
    return Path(__file__).resolve().parents[3]
