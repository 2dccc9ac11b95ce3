"""REST interactions through the router, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.model import FhirRequest, FhirResponse


def call(svc: Any, method: str, path: str, query: list[tuple[str, str]] | None = None,
         resource: dict | None = None, headers: dict | None = None, body: bytes | None = None) -> FhirResponse:
    return svc.router.handle(FhirRequest(method, path, query or [], headers or {}, body=body, resource=resource))


def patient(**extra: Any) -> dict:
    return {"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "gender": "male", "birthDate": "1974-12-25", **extra}


def test_create_read_vread_update_delete_history(services: Any) -> None:
    created = call(services, "POST", "Patient", resource=patient())
    assert created.status == 201
    pid = created.resource["id"]
    assert created.headers["ETag"] == 'W/"1"'
    assert created.headers["Location"].endswith(f"/Patient/{pid}/_history/1")
    assert created.resource["meta"]["versionId"] == "1"

    read = call(services, "GET", f"Patient/{pid}")
    assert read.status == 200 and read.resource["name"][0]["family"] == "Chalmers"
    assert read.headers["Last-Modified"]

    upd = call(services, "PUT", f"Patient/{pid}", resource={**patient(gender="female"), "id": pid})
    assert upd.status == 200 and upd.headers["ETag"] == 'W/"2"'
    assert call(services, "GET", f"Patient/{pid}/_history/1").resource["gender"] == "male"
    assert call(services, "GET", f"Patient/{pid}/_history/2").resource["gender"] == "female"

    deleted = call(services, "DELETE", f"Patient/{pid}")
    assert deleted.status == 200
    gone = call(services, "GET", f"Patient/{pid}")
    assert gone.status == 410 and gone.resource["resourceType"] == "OperationOutcome"
    assert call(services, "GET", f"Patient/{pid}/_history/2").status == 200  # older versions stay readable
    assert call(services, "GET", f"Patient/{pid}/_history/3").status == 410  # the tombstone

    again = call(services, "PUT", f"Patient/{pid}", resource={**patient(), "id": pid})
    assert again.status == 201 and again.resource["meta"]["versionId"] == "4"  # the sequence continues

    hist = call(services, "GET", f"Patient/{pid}/_history").resource
    assert hist["type"] == "history" and hist["total"] == 4
    assert [e["response"]["etag"] for e in hist["entry"]] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert hist["entry"][1]["request"]["method"] == "DELETE" and "resource" not in hist["entry"][1]


def test_update_as_create_with_client_id_and_unchanged_update(services: Any) -> None:
    resp = call(services, "PUT", "Patient/client-chosen-1", resource={**patient(), "id": "client-chosen-1"})
    assert resp.status == 201 and resp.resource["id"] == "client-chosen-1"
    same = call(services, "PUT", "Patient/client-chosen-1", resource={**patient(), "id": "client-chosen-1"})
    assert same.status == 200 and same.headers["ETag"] == 'W/"1"'  # no change, no new version


def test_if_match_and_conditional_read(services: Any) -> None:
    pid = call(services, "POST", "Patient", resource=patient()).resource["id"]
    ok = call(services, "PUT", f"Patient/{pid}", resource={**patient(active=True), "id": pid},
              headers={"If-Match": 'W/"1"'})
    assert ok.status == 200
    stale = call(services, "PUT", f"Patient/{pid}", resource={**patient(active=False), "id": pid},
                 headers={"If-Match": 'W/"1"'})
    assert stale.status == 412
    assert call(services, "GET", f"Patient/{pid}").resource["active"] is True  # nothing lost
    assert call(services, "DELETE", f"Patient/{pid}", headers={"If-Match": 'W/"1"'}).status == 412
    assert call(services, "GET", f"Patient/{pid}", headers={"If-None-Match": 'W/"2"'}).status == 304
    assert call(services, "GET", f"Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status == 200
    lm = call(services, "GET", f"Patient/{pid}").headers["Last-Modified"]
    assert call(services, "GET", f"Patient/{pid}", headers={"If-Modified-Since": lm}).status == 304
    assert call(services, "GET", f"Patient/{pid}",
                headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status == 200


def test_conditional_create_update_delete(services: Any) -> None:
    ident = {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}
    first = call(services, "POST", "Patient", resource=patient(identifier=[ident]),
                 headers={"If-None-Exist": "identifier=urn:oid:1.2.36.146.595.217.0.1|12345"})
    assert first.status == 201
    second = call(services, "POST", "Patient", resource=patient(identifier=[ident]),
                  headers={"If-None-Exist": "identifier=urn:oid:1.2.36.146.595.217.0.1|12345"})
    assert second.status == 200 and second.resource["id"] == first.resource["id"]

    q = [("identifier", "urn:oid:1.2.36.146.595.217.0.1|12345")]
    upd = call(services, "PUT", "Patient", q, resource=patient(identifier=[ident], active=True))
    assert upd.status == 200 and upd.resource["id"] == first.resource["id"]
    new = call(services, "PUT", "Patient", [("identifier", "urn:x|none")],
               resource=patient(identifier=[{"system": "urn:x", "value": "none"}]))
    assert new.status == 201

    # two matches: 412 for conditional create, update and delete
    call(services, "POST", "Patient", resource=patient(identifier=[ident]))
    for method, extra in (("POST", {"If-None-Exist": "identifier=urn:oid:1.2.36.146.595.217.0.1|12345"}),):
        assert call(services, method, "Patient", resource=patient(), headers=extra).status == 412
    assert call(services, "PUT", "Patient", q, resource=patient()).status == 412
    assert call(services, "DELETE", "Patient", q).status == 412

    one = call(services, "DELETE", "Patient", [("identifier", "urn:x|none")])
    assert one.status == 200
    assert call(services, "GET", f"Patient/{new.resource['id']}").status == 410
    assert call(services, "DELETE", "Patient", []).status == 400  # no criteria


def test_prefer_return(services: Any) -> None:
    minimal = call(services, "POST", "Patient", resource=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status == 201 and minimal.resource is None and minimal.headers["Location"]
    oo = call(services, "POST", "Patient", resource=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert oo.resource["resourceType"] == "OperationOutcome"


def test_id_and_last_updated_search(services: Any) -> None:
    a = call(services, "POST", "Patient", resource=patient()).resource
    b = call(services, "POST", "Patient", resource=patient()).resource
    found = call(services, "GET", "Patient", [("_id", f"{a['id']},{b['id']}")]).resource
    assert {e["resource"]["id"] for e in found["entry"]} == {a["id"], b["id"]}
    lu = a["meta"]["lastUpdated"]
    after = call(services, "GET", "Patient", [("_lastUpdated", f"gt{b['meta']['lastUpdated']}")]).resource
    assert after.get("total", 0) == 0
    since = call(services, "GET", "Patient", [("_lastUpdated", f"ge{lu}")]).resource
    assert since["total"] == 2


@pytest.mark.parametrize("path,method,resource,status", [
    ("Nonsense", "GET", None, 404),
    ("Nonsense/1", "GET", None, 404),
    ("Patient/1", "PUT", {"resourceType": "Observation", "id": "1"}, 400),
    ("Patient/1", "PUT", {"resourceType": "Patient", "id": "2"}, 400),
    ("Patient/1", "PUT", {"resourceType": "Patient"}, 400),
    ("Patient/bad$id", "GET", None, 400),
    ("Patient/unknown-id", "GET", None, 404),
    ("Patient", "POST", {"resourceType": "Observation"}, 400),
    ("Patient/1/_history/x", "GET", None, 400),
])
def test_errors_are_operation_outcomes(services: Any, path: str, method: str, resource: dict | None,
                                       status: int) -> None:
    resp = call(services, method, path, resource=resource)
    assert resp.status == status
    assert resp.resource["resourceType"] == "OperationOutcome"


def test_malformed_and_unsupported_bodies(sqlite_services: Any) -> None:
    svc = sqlite_services
    bad = call(svc, "POST", "Patient", headers={"Content-Type": "application/fhir+json"}, body=b"{not json")
    assert bad.status == 400
    media = call(svc, "POST", "Patient", headers={"Content-Type": "image/png"}, body=b"\x89PNG")
    assert media.status == 415
    invalid = call(svc, "POST", "Patient", resource={"resourceType": "Patient", "gender": "robot"})
    assert invalid.status in (400, 422)
    unknown = call(svc, "POST", "Patient", resource={"resourceType": "Patient", "notAnElement": 1})
    assert unknown.status in (400, 422)
    assert svc.repo.count_by_type() == {}  # nothing stored from rejected requests


def test_history_levels_and_paging(services: Any) -> None:
    for i in range(5):
        call(services, "POST", "Patient", resource=patient(id=None, birthDate=f"197{i}-01-01"))
    call(services, "POST", "Observation", resource={"resourceType": "Observation", "status": "final",
                                                    "code": {"text": "x"}})
    assert call(services, "GET", "Patient/_history").resource["total"] == 5
    system = call(services, "GET", "_history", [("_count", "2")]).resource
    assert system["total"] == 6 and len(system["entry"]) == 2
    nxt = [link for link in system["link"] if link["relation"] == "next"]
    assert nxt and "_offset=2" in nxt[0]["url"]
    future = call(services, "GET", "_history", [("_since", "2100-01-01T00:00:00Z")]).resource
    assert future["total"] == 0
    assert call(services, "GET", "_history", [("_since", "yesterday")]).status == 400


def test_capability_statement_reflects_implementation(sqlite_services: Any) -> None:
    cs = call(sqlite_services, "GET", "metadata").resource
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    patient_entry = next(r for r in rest["resource"] if r["type"] == "Patient")
    codes = {i["code"] for i in patient_entry["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "create", "search-type", "history-instance"} <= codes
    names = {p["name"] for p in patient_entry["searchParam"]}
    assert {"name", "identifier", "birthdate", "_id", "_lastUpdated"} <= names
    assert any(o["name"] == "everything" for o in patient_entry.get("operation", []))
    assert {"transaction", "batch"} <= {i["code"] for i in rest["interaction"]}


def test_conditional_delete_multiple_when_configured(services_factory: Any) -> None:
    single = services_factory()
    multi = services_factory(allow_multiple_delete=True)
    for svc in (single, multi):
        for _ in range(3):
            call(svc, "POST", "Patient", resource=patient(identifier=[{"system": "urn:batch", "value": "x"}]))
    assert call(single, "DELETE", "Patient", [("identifier", "urn:batch|x")]).status == 412
    assert single.repo.count_by_type() == {"Patient": 3}
    assert call(multi, "DELETE", "Patient", [("identifier", "urn:batch|x")]).status == 200
    assert multi.repo.count_by_type() == {}


def test_history_at_gives_the_version_current_then(services: Any) -> None:
    import time

    pid = call(services, "POST", "Patient", resource=patient()).resource["id"]
    first = call(services, "GET", f"Patient/{pid}").resource["meta"]["lastUpdated"]
    time.sleep(0.01)
    call(services, "PUT", f"Patient/{pid}", resource={**patient(active=True), "id": pid})
    at_first = call(services, "GET", f"Patient/{pid}/_history", [("_at", first)]).resource
    assert [e["resource"]["meta"]["versionId"] for e in at_first["entry"]] == ["1"]


def test_unstorable_number_from_an_in_process_caller_is_422(sqlite_services: Any) -> None:
    resp = call(sqlite_services, "POST", "Observation", resource={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueQuantity": {"value": 10 ** 400}})
    assert resp.status in (400, 422) and resp.resource["resourceType"] == "OperationOutcome"
    assert sqlite_services.repo.count_by_type() == {}


def test_server_assigned_ids_are_time_ordered_uuids(services: Any) -> None:
    """POST and transaction creates get UUIDv7 ids that sort by creation (append-only index inserts)."""
    import uuid

    ids = [call(services, "POST", "Patient", resource=patient()).resource["id"] for _ in range(5)]
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": patient(), "request": {"method": "POST", "url": "Patient"}}
        for _ in range(5)]}
    out = call(services, "POST", "", resource=tx).resource
    ids += [e["resource"]["id"] for e in out["entry"]]
    assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_full_text_follows_updates_and_deletes(services: Any) -> None:
    """_content / _text see a resource's current version only (SQLite FTS5 and PostgreSQL full text)."""
    def hits(param: str, word: str) -> list[str]:
        got = call(services, "GET", "Patient", [(param, word)]).resource
        return [e["resource"]["id"] for e in got.get("entry", [])]

    narrative = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Zebrafinch</div>'}
    pid = call(services, "POST", "Patient", resource=patient(text=narrative)).resource["id"]
    assert hits("_content", "Chalmers") == [pid] and hits("_text", "zebrafinch") == [pid]
    changed = {**patient(text={**narrative, "div": narrative["div"].replace("Zebrafinch", "Kingfisher")}),
               "name": [{"family": "Okonkwo"}], "id": pid}
    assert call(services, "PUT", f"Patient/{pid}", resource=changed).status == 200
    assert hits("_content", "Chalmers") == [] and hits("_content", "okonkwo") == [pid]
    assert hits("_text", "zebrafinch") == [] and hits("_text", "kingfisher") == [pid]
    assert call(services, "DELETE", f"Patient/{pid}").status == 200
    assert hits("_content", "okonkwo") == [] and hits("_text", "kingfisher") == []
    if services.engine.dialect.name == "sqlite":  # the FTS5 index agrees with its content table
        with services.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO idx_text_fts (idx_text_fts, rank) VALUES ('integrity-check', 1)")
