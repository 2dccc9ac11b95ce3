"""batch and transaction Bundles: placeholders, conditional references, order, atomicity."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.model import FhirRequest


def post_bundle(svc: Any, bundle: dict) -> Any:
    return svc.router.handle(FhirRequest("POST", "", resource=bundle))


def test_transaction_resolves_placeholders_everywhere(services: Any) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                      "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                      "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                               '<a href="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a">patient</a></div>'}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "42"}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|42"}},
    ]}
    resp = post_bundle(services, bundle)
    assert resp.status == 200, resp.resource
    out = resp.resource
    assert out["type"] == "transaction-response"
    obs_loc, pat_loc = (e["response"]["location"] for e in out["entry"])
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created", "201 Created"]
    pid = pat_loc.split("/Patient/")[1].split("/")[0]
    oid = obs_loc.split("/Observation/")[1].split("/")[0]
    obs = services.router.handle(FhirRequest("GET", f"Observation/{oid}")).resource
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert f'href="Patient/{pid}"' in obs["text"]["div"]

    # the same bundle again: ifNoneExist finds the patient, the observation points at the existing one
    again = post_bundle(services, bundle).resource
    assert again["entry"][1]["response"]["status"] == "200 OK"
    obs2_id = again["entry"][0]["response"]["location"].split("/Observation/")[1].split("/")[0]
    obs2 = services.router.handle(FhirRequest("GET", f"Observation/{obs2_id}")).resource
    assert obs2["subject"]["reference"] == f"Patient/{pid}"


def test_transaction_conditional_reference_and_atomicity(services: Any) -> None:
    services.router.handle(FhirRequest("POST", "Patient", resource={
        "resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]}))
    ok = post_bundle(services, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Encounter", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                      "subject": {"reference": "Patient?identifier=urn:mrn|7"}},
         "request": {"method": "POST", "url": "Encounter"}}]})
    assert ok.status == 200
    before = services.repo.count_by_type()
    bad = post_bundle(services, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Ok"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "not-a-gender"},
         "request": {"method": "POST", "url": "Patient"}}]})
    assert bad.status in (400, 422)
    assert bad.resource["resourceType"] == "OperationOutcome"
    assert "entry[1]" in bad.resource["issue"][0]["diagnostics"]
    assert services.repo.count_by_type() == before  # all or nothing
    missing = post_bundle(services, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Encounter", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                      "subject": {"reference": "Patient?identifier=urn:mrn|nobody"}},
         "request": {"method": "POST", "url": "Encounter"}}]})
    assert missing.status == 412


def test_transaction_processing_order(services: Any) -> None:
    services.router.handle(FhirRequest("PUT", "Patient/p1", resource={"resourceType": "Patient", "id": "p1"}))
    resp = post_bundle(services, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient/p2"}},
        {"resource": {"resourceType": "Patient", "id": "p2", "active": True},
         "request": {"method": "PUT", "url": "Patient/p2"}},
        {"request": {"method": "DELETE", "url": "Patient/p1"}},
    ]})
    assert resp.status == 200, resp.resource
    statuses = [e["response"]["status"] for e in resp.resource["entry"]]
    assert statuses[0] == "200 OK"  # GET ran after the PUT
    assert resp.resource["entry"][0]["resource"]["active"] is True
    assert statuses[1] == "201 Created" and statuses[2] == "200 OK"


def test_transaction_runs_deletes_then_posts_then_puts_then_gets(services: Any) -> None:
    """The spec's order, whatever the Bundle's: DELETE first (so a POST may reuse what it frees: ifNoneExist no
    longer matches the deleted Patient), POST before PUT (a PUT of a POSTed resource's identifier finds it),
    GET last (it sees every write)."""
    services.router.handle(FhirRequest("PUT", "Patient/old", resource={
        "resourceType": "Patient", "id": "old", "identifier": [{"system": "urn:order", "value": "mrn-1"}]}))
    resp = post_bundle(services, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient?identifier=urn:order|mrn-1"}},
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:order", "value": "mrn-1"}],
                      "active": True},
         "request": {"method": "PUT", "url": "Patient?identifier=urn:order|mrn-1"}},
        {"fullUrl": "urn:uuid:5e0b7e2c-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:order", "value": "mrn-1"}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:order|mrn-1"}},
        {"request": {"method": "DELETE", "url": "Patient/old"}},
    ]})
    assert resp.status == 200, resp.resource
    get, put, post, delete = resp.resource["entry"]
    assert delete["response"]["status"] == "200 OK"
    assert post["response"]["status"] == "201 Created"  # the deleted "old" no longer matched ifNoneExist
    def id_of(entry: dict[str, Any]) -> str:
        return str(entry["response"]["location"].split("/_history")[0].rsplit("/", 1)[1])

    new_id = id_of(post)
    assert put["response"]["status"] == "200 OK" and id_of(put) == new_id
    found = [e["resource"] for e in get["resource"]["entry"]]
    assert [(p["id"], p.get("active")) for p in found] == [(new_id, True)]  # after the POST and the PUT


def test_batch_reports_each_entry(services: Any) -> None:
    resp = post_bundle(services, {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "active": True}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        {"resource": {"resourceType": "Patient", "gender": "bogus"}, "request": {"method": "POST", "url": "Patient"}},
    ]})
    assert resp.status == 200
    entries = resp.resource["entry"]
    assert entries[0]["response"]["status"] == "201 Created" and entries[0]["response"]["etag"] == 'W/"1"'
    created = services.repo.read("Patient", entries[0]["response"]["location"].split("/_history")[0].rsplit("/", 1)[1])
    assert entries[0]["response"]["location"].endswith(f"Patient/{created.id}/_history/1")
    assert "location" not in entries[1]["response"]
    assert entries[1]["response"]["status"] == "404 Not Found"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"][:3] in ("400", "422")
    assert services.repo.count_by_type() == {"Patient": 1}


def test_bad_bundles(sqlite_services: Any) -> None:
    assert post_bundle(sqlite_services, {"resourceType": "Patient"}).status == 400
    assert post_bundle(sqlite_services, {"resourceType": "Bundle", "type": "collection"}).status == 400
    assert post_bundle(sqlite_services, {"resourceType": "Bundle", "type": "batch",
                                         "entry": [{"request": {"method": "FLY", "url": "x"}}]}).status == 400


@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize("entry", [
    {"fullUrl": {"x": 1}, "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
    {"fullUrl": ["urn:uuid:1"], "resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient?name=x"}},
    {"resource": {"name": [{"family": "no type"}]}, "request": {"method": "POST", "url": "Patient"}},
    {"resource": "Patient", "request": {"method": "POST", "url": "Patient"}},
    {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient", "ifNoneExist": {"a": 1}}},
    {"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/p", "ifMatch": 1}},
], ids=["fullUrl-object", "fullUrl-array", "resource-without-type", "resource-string", "ifNoneExist-object",
        "ifMatch-number"])
def test_entries_of_the_wrong_json_shape_are_400(sqlite_services: Any, kind: str, entry: dict[str, Any]) -> None:
    """The transaction's bookkeeping read these before any validation: KeyError/TypeError, a 500."""
    resp = post_bundle(sqlite_services, {"resourceType": "Bundle", "type": kind, "entry": [entry]})
    assert resp.status == 400, resp.resource
    assert resp.resource["issue"][0]["expression"][0].startswith("Bundle.entry[0]")
    assert sqlite_services.repo.count_by_type() == {}


def test_response_last_modified_is_the_exact_instant_and_minimal_keeps_it(services: Any) -> None:
    entry = {"resource": {"resourceType": "Patient", "name": [{"family": "Instant"}]},
             "request": {"method": "POST", "url": "Patient"}}
    out = post_bundle(services, {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}).resource
    stored = out["entry"][0]["resource"]
    assert out["entry"][0]["response"]["lastModified"] == stored["meta"]["lastUpdated"]  # sub-second, not HTTP's
    minimal = services.router.handle(FhirRequest("POST", "", headers={"Prefer": "return=minimal"}, resource={
        "resourceType": "Bundle", "type": "batch", "entry": [entry]})).resource
    response = minimal["entry"][0]["response"]
    assert "resource" not in minimal["entry"][0]
    assert response["lastModified"].endswith("Z") and response["status"] == "201 Created"


def test_entry_urls_plain_or_with_a_query_reach_the_same_interaction(services: Any) -> None:
    """Plain ``Type/id`` entry URLs skip URL parsing; every other form is split as a URL."""
    created = post_bundle(services, {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "id": "url-forms", "gender": "female"},
         "request": {"method": "PUT", "url": "Patient/url-forms"}}]}).resource
    assert created["entry"][0]["response"]["status"] == "201 Created"
    urls = ["Patient/url-forms", "Patient?_id=url-forms", "Patient/url-forms?_format=json",
            "Patient/url-forms#frag", "Patient/url-forms/_history/1", "Patient/url%2Dforms"]
    out = post_bundle(services, {"resourceType": "Bundle", "type": "batch",
                                 "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}).resource
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses[:5] == ["200 OK"] * 5, statuses
    assert out["entry"][1]["resource"]["total"] == 1  # the query reached the search
    assert statuses[5].startswith("400")  # a percent-encoded id is not decoded into another resource's id
