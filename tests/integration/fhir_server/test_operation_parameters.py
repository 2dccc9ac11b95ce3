"""Operations given a malformed Parameters body answer 400 with an OperationOutcome, never 500.

Every operation of the full app (core, terminology, NLP, imaging) reads its Parameters through
``fhir_server.operations.parameters``; before, ``"parameter": "x"`` or a string where a Reference belongs
reached ``p.get(...)`` and came back as a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import LiveServer, start_live_server

SHAPES = [
    {"resourceType": "Parameters", "parameter": "x"},
    {"resourceType": "Parameters", "parameter": 5},
    {"resourceType": "Parameters", "parameter": ["x"]},
    {"resourceType": "Parameters", "parameter": [{"valueString": "a parameter without a name"}]},
]
OPERATIONS = ["Patient/$validate", "Patient/p1/$meta-add", "Patient/p1/$meta-delete", "$export", "$extract",
              "ValueSet/$expand", "CodeSystem/$lookup", "ConceptMap/$translate", "ImagingStudy/$analyze"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from digitalfront.app import build_services, create_app
    from digitalfront.config import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('ops')}/fhir.db", auth=False)
    settings.extra = {"terminology_autoload": "0"}
    services = build_services(settings)
    server, stop = start_live_server(create_app(services=services))
    r = requests.put(f"{server.base}/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, timeout=30)
    assert r.status_code in (200, 201), r.text
    yield server
    stop()
    services.engine.dispose()


def post(live: LiveServer, path: str, body: Any, content_type: str = "application/fhir+json") -> requests.Response:
    return requests.post(f"{live.base}/{path}", data=json.dumps(body) if not isinstance(body, str) else body,
                         headers={"Content-Type": content_type, "Prefer": "respond-async"}, timeout=60)


def assert_400(r: requests.Response) -> dict[str, Any]:
    assert r.status_code == 400, (r.status_code, r.text)
    outcome: dict[str, Any] = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


@pytest.mark.parametrize("path", OPERATIONS)
@pytest.mark.parametrize("body", SHAPES, ids=["string", "number", "string-entry", "no-name"])
def test_malformed_parameters_are_400(live: LiveServer, path: str, body: dict[str, Any]) -> None:
    assert_400(post(live, path, body))


@pytest.mark.parametrize(("path", "parameter"), [
    ("$extract", {"name": "note", "valueReference": "DocumentReference/1"}),
    ("ImagingStudy/$analyze", {"name": "dicom", "valueAttachment": "AAAA"}),
    ("ImagingStudy/$analyze", {"name": "dicom", "valueAttachment": {"data": 5}}),
    ("ImagingStudy/$analyze", {"name": "dicom", "valueAttachment": {"url": ["Binary/1"]}}),
    ("ImagingStudy/$analyze", {"name": "binary", "valueReference": "Binary/1"}),
    ("ImagingStudy/$analyze", {"name": "subject", "valueReference": {"reference": 5}}),
])
def test_complex_values_of_the_wrong_json_type_are_400(live: LiveServer, path: str,
                                                       parameter: dict[str, Any]) -> None:
    assert_400(post(live, path, {"resourceType": "Parameters", "parameter": [parameter]}))


def test_terminology_operations_take_xml_parameters(live: LiveServer) -> None:
    """Terminology operations read their body as the other operations do: JSON or XML by Content-Type."""
    cs = {"resourceType": "CodeSystem", "id": "colours", "url": "http://example.org/colours", "status": "active",
          "content": "complete", "concept": [{"code": "red", "display": "Red"}]}
    assert requests.put(f"{live.base}/CodeSystem/colours", json=cs, timeout=30).status_code in (200, 201)
    xml = ('<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="code"/><valueCode value="red"/>'
           '</parameter></Parameters>')
    r = post(live, "CodeSystem/colours/$lookup", xml, "application/fhir+xml")
    assert r.status_code == 200, r.text
    display = [p for p in r.json()["parameter"] if p["name"] == "display"]
    assert display == [{"name": "display", "valueString": "Red"}]
    assert_400(post(live, "CodeSystem/colours/$lookup", "<Parameters", "application/fhir+xml"))
