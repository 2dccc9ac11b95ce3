"""The FHIR API over real HTTP (threaded WSGI server) with real clients (requests, fhirpy)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

FHIR_JSON = "application/fhir+json"


def test_crud_over_http_headers_and_formats(live_server: Any) -> None:
    base = live_server.base
    r = requests.post(f"{base}/Patient", json={"resourceType": "Patient", "name": [{"family": "Http"}]},
                      headers={"Content-Type": FHIR_JSON}, timeout=30)
    assert r.status_code == 201
    assert r.headers["Content-Type"].startswith(FHIR_JSON)
    assert r.headers["ETag"] == 'W/"1"' and r.headers["Location"].startswith(base + "/Patient/")
    pid = r.json()["id"]
    got = requests.get(f"{base}/Patient/{pid}", timeout=30)
    assert got.status_code == 200 and got.json()["name"][0]["family"] == "Http" and got.headers["Last-Modified"]
    pretty = requests.get(f"{base}/Patient/{pid}?_pretty=true", timeout=30)
    assert "\n" in pretty.text and json.loads(pretty.text) == got.json()
    head = requests.head(f"{base}/Patient/{pid}", timeout=30)
    assert head.status_code == 200 and head.headers["ETag"] == 'W/"1"'
    assert requests.get(f"{base}/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}, timeout=30).status_code == 304
    summary = requests.get(f"{base}/Patient/{pid}?_summary=true", timeout=30).json()
    assert summary["meta"]["tag"][0]["code"] == "SUBSETTED"


def test_xml_in_and_out(live_server: Any) -> None:
    from fhir_server import formats

    if getattr(formats, "XML_SUPPORTED", True) is False:
        pytest.skip("XML not built yet")
    base = live_server.base
    xml = ('<Patient xmlns="http://hl7.org/fhir"><active value="true"/>'
           '<name><family value="Xml"/><given value="Ann"/></name></Patient>')
    r = requests.post(f"{base}/Patient", data=xml, headers={"Content-Type": "application/fhir+xml",
                                                              "Accept": "application/fhir+xml"}, timeout=30)
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"].startswith("application/fhir+xml")
    assert "<family value=\"Xml\"/>" in r.text
    pid = r.headers["Location"].split("/Patient/")[1].split("/")[0]
    as_json = requests.get(f"{base}/Patient/{pid}?_format=json", timeout=30).json()
    assert as_json["name"][0]["given"] == ["Ann"] and as_json["active"] is True
    evil = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            '<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>')
    bad = requests.post(f"{base}/Patient", data=evil, headers={"Content-Type": "application/fhir+xml"}, timeout=30)
    assert bad.status_code == 400 and "root:" not in bad.text


@pytest.mark.parametrize("method,path,body,headers,status", [
    ("POST", "Patient", b"{broken", {"Content-Type": FHIR_JSON}, 400),
    ("POST", "Patient", b"<Patient", {"Content-Type": "application/fhir+xml"}, 400),
    ("GET", "NotAType", None, {}, 404),
    ("POST", "Patient", b"hello", {"Content-Type": "text/plain"}, 415),
    ("PUT", "Patient/a", json.dumps({"resourceType": "Patient", "id": "b"}).encode(), {"Content-Type": FHIR_JSON}, 400),
    ("GET", "Patient?birthdate=notadate", None, {}, 400),
    ("GET", "Patient?unknown-param=1", None, {}, 400),
    # a conditional update with no match and a body id that is not a string (was a 500), or not an id
    ("PUT", "Patient?name=nobody-has-this", json.dumps({"resourceType": "Patient", "id": {}}).encode(),
     {"Content-Type": FHIR_JSON}, 400),
    ("PUT", "Patient?name=nobody-has-this", json.dumps({"resourceType": "Patient", "id": "a\n"}).encode(),
     {"Content-Type": FHIR_JSON}, 400),
    # control characters in a string (the spec forbids them; PostgreSQL's JSONB cannot hold a NUL: a 500)
    ("POST", "Patient", b'{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}', {"Content-Type": FHIR_JSON}, 400),
    ("POST", "Patient", b'{"resourceType":"Patient","gender":"ma\\u0007le"}', {"Content-Type": FHIR_JSON}, 400),
    ("GET", "Patient?_id=a%00", None, {}, 400),  # a NUL in a query: PostgreSQL refused the SQL (a 500)
    # four references in one chain: SQLite's parser overflowed (500)
    ("GET", "Observation?subject:Patient.organization.partof.partof.name=x", None, {}, 400),
])
def test_http_errors_are_operation_outcomes(live_server: Any, method: str, path: str, body: bytes | None,
                                            headers: dict, status: int) -> None:
    r = requests.request(method, f"{live_server.base}/{path}", data=body, headers=headers, timeout=30)
    assert r.status_code == status
    assert r.json()["resourceType"] == "OperationOutcome"


def test_body_over_limit_is_413(live_server_factory: Any) -> None:
    live = live_server_factory(max_body_bytes=1024)
    big = json.dumps({"resourceType": "Patient", "name": [{"text": "x" * 5000}]})
    r = requests.post(f"{live.base}/Patient", data=big, headers={"Content-Type": FHIR_JSON}, timeout=30)
    assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome"


def test_unknown_paths_and_methods_answer_operation_outcomes(live_server: Any) -> None:
    """Not Flask's HTML pages: a client that got the base wrong, or used the wrong method, gets JSON."""
    root = live_server.base.rsplit("/fhir", 1)[0]
    r = requests.get(f"{root}/Patient", timeout=30)  # the base without /fhir
    assert r.status_code == 404 and r.headers["Content-Type"].startswith(FHIR_JSON)
    issue = r.json()["issue"][0]
    assert issue["code"] == "not-found" and "/fhir/" in issue["diagnostics"]
    r = requests.delete(f"{root}/healthz", timeout=30)
    assert r.status_code == 405 and r.headers["Content-Type"].startswith(FHIR_JSON)
    assert r.json()["issue"][0]["code"] == "not-supported" and "GET" in r.headers["Allow"]
    assert "DELETE is not allowed on /healthz" in r.json()["issue"][0]["diagnostics"]
    r = requests.put(f"{root}/hl7v2/messages", timeout=30)
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"


def test_lenient_handling_reports_ignored_params(live_server: Any) -> None:
    r = requests.get(f"{live_server.base}/Patient?bogus=1&gender=male",
                     headers={"Prefer": "handling=lenient"}, timeout=30)
    assert r.status_code == 200
    self_link = next(link["url"] for link in r.json()["link"] if link["relation"] == "self")
    assert "gender=male" in self_link and "bogus" not in self_link


def test_fhirpy_client_round_trip(live_server: Any) -> None:
    from fhirpy import SyncFHIRClient

    client = SyncFHIRClient(live_server.base)
    pat = client.resource("Patient", name=[{"family": "Fhirpy", "given": ["Real"]}], gender="female")
    pat.save()
    assert pat.id
    found = client.resources("Patient").search(family="Fhirpy").fetch()
    assert [p.id for p in found] == [pat.id]
    pat["active"] = True
    pat.save()
    again = client.reference("Patient", pat.id).to_resource()
    assert again["active"] is True and again["meta"]["versionId"] == "2"
    pat.delete()
    assert client.resources("Patient").search(_id=pat.id).fetch() == []


def test_metrics_endpoint(live_server: Any) -> None:
    requests.post(f"{live_server.base}/Patient", json={"resourceType": "Patient"},
                  headers={"Content-Type": FHIR_JSON}, timeout=30)
    text = requests.get(f"{live_server.url}/metrics", timeout=30).text
    assert 'digitalfront_resources{type="Patient"} 1' in text


def test_patch_over_http_json_patch_fhirpath_patch_and_versions(live_server: Any) -> None:
    """PATCH as a client sends it: JSON Patch and FHIRPath Patch bodies, a new version with its ETag, 412 for a
    stale If-Match (nothing changed), 422 for a patch that makes the resource invalid, and conditional PATCH."""
    base = live_server.base
    created = requests.post(f"{base}/Patient", json={"resourceType": "Patient", "active": True,
                                                     "identifier": [{"system": "urn:t", "value": "patch-1"}],
                                                     "name": [{"family": "Before"}]},
                            headers={"Content-Type": FHIR_JSON}, timeout=30).json()
    url = f"{base}/Patient/{created['id']}"
    r = requests.patch(url, data=json.dumps([{"op": "replace", "path": "/name/0/family", "value": "After"}]),
                       headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == 'W/"2"' and r.json()["name"][0]["family"] == "After"
    stale = requests.patch(url, data=json.dumps([{"op": "replace", "path": "/active", "value": False}]),
                           headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'}, timeout=30)
    assert stale.status_code == 412 and stale.json()["resourceType"] == "OperationOutcome"
    fhirpath = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.active"},
        {"name": "value", "valueBoolean": False}]}]}
    r = requests.patch(url, json=fhirpath, headers={"Content-Type": FHIR_JSON}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == 'W/"3"' and r.json()["active"] is False
    invalid = requests.patch(url, data=json.dumps([{"op": "replace", "path": "/gender", "value": "robot"}]),
                             headers={"Content-Type": "application/json-patch+json"}, timeout=30)
    assert invalid.status_code == 422 and invalid.json()["resourceType"] == "OperationOutcome"
    r = requests.patch(f"{base}/Patient?identifier=urn:t|patch-1",
                       data=json.dumps([{"op": "add", "path": "/gender", "value": "female"}]),
                       headers={"Content-Type": "application/json-patch+json"}, timeout=30)
    assert r.status_code == 200, r.text
    history = requests.get(f"{url}/_history", timeout=30).json()
    assert history["total"] == 4  # created, two patches, the conditional one; the stale and invalid ones wrote nothing
    final = requests.get(url, timeout=30).json()
    assert (final["name"][0]["family"], final["active"], final["gender"]) == ("After", False, "female")


def test_write_headers_prefer_and_a_conditional_delete_that_matches_nothing(live_server: Any) -> None:
    """Location and Content-Location name the new version; ``Prefer: return=representation`` (explicit) and
    ``return=OperationOutcome`` shape the body; a conditional DELETE that matches nothing is a 200 with an
    informational OperationOutcome, and deletes nothing."""
    base = live_server.base
    h = {"Content-Type": FHIR_JSON}
    created = requests.post(f"{base}/Patient", json={"resourceType": "Patient", "name": [{"family": "Hdr"}]},
                            headers={**h, "Prefer": "return=representation"}, timeout=30)
    assert created.status_code == 201 and created.json()["name"][0]["family"] == "Hdr"
    pid = created.json()["id"]
    assert created.headers["Location"] == created.headers["Content-Location"] == f"{base}/Patient/{pid}/_history/1"
    updated = requests.put(f"{base}/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "active": True},
                           headers={**h, "Prefer": "return=OperationOutcome"}, timeout=30)
    assert updated.status_code == 200 and updated.json()["resourceType"] == "OperationOutcome"
    assert updated.headers["ETag"] == 'W/"2"'
    nothing = requests.delete(f"{base}/Patient", params={"identifier": "urn:none|nobody"}, timeout=30)
    assert nothing.status_code == 200, nothing.text
    outcome = nothing.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "information"
    assert requests.get(f"{base}/Patient/{pid}", timeout=30).status_code == 200
