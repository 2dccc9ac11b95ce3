"""$meta, $meta-add and $meta-delete over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import requests

from tests.conftest import start_live_server

FHIR_JSON = {"Content-Type": "application/fhir+json"}
VIP = {"system": "http://example.org/tags", "code": "vip", "display": "VIP"}
RESTRICTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"


def _params(meta: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]}


def _returned(r: requests.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    (p,) = r.json()["parameter"]
    assert p["name"] == "return"
    meta: dict[str, Any] = p["valueMeta"]
    return meta


def test_meta_add_and_delete_change_meta_in_place_and_search_follows(db_url: str, app_factory: Any,
                                                                      monkeypatch: Any) -> None:
    # no background terminology load: it would outlive the test and find its database dropped
    monkeypatch.setenv("DIGITALFRONT_TERMINOLOGY_AUTOLOAD", "0")
    live, stop = start_live_server(app_factory(database_url=db_url))
    base = live.base
    try:
        r = requests.put(f"{base}/Patient/m1", json={"resourceType": "Patient", "id": "m1", "meta": {"tag": [VIP]}},
                         headers=FHIR_JSON, timeout=30)
        assert r.status_code == 201
        before = r.json()["meta"]
        assert _returned(requests.get(f"{base}/Patient/m1/$meta", timeout=30)) == {"tag": [VIP]}

        added = _returned(requests.post(f"{base}/Patient/m1/$meta-add", headers=FHIR_JSON, timeout=30, json=_params(
            {"tag": [{**VIP, "display": "ignored: same system and code"}], "security": [RESTRICTED],
             "profile": [US_CORE]})))
        assert added == {"tag": [VIP], "security": [RESTRICTED], "profile": [US_CORE]}
        now = requests.get(f"{base}/Patient/m1", timeout=30).json()
        # no new version: the operation changes the current version's meta in place
        assert now["meta"]["versionId"] == before["versionId"] == "1"
        assert now["meta"]["lastUpdated"] == before["lastUpdated"]
        assert now["meta"]["security"] == [RESTRICTED] and now["meta"]["profile"] == [US_CORE]
        history = requests.get(f"{base}/Patient/m1/_history", timeout=30).json()
        assert history["total"] == 1 and history["entry"][0]["resource"]["meta"]["profile"] == [US_CORE]

        def found(query: str) -> list[str]:
            bundle = requests.get(f"{base}/Patient?{query}", timeout=30).json()
            return [e["resource"]["id"] for e in bundle.get("entry", [])]

        assert found(f"_security={RESTRICTED['system']}|R") == ["m1"]
        assert found(f"_profile={US_CORE}") == ["m1"]
        in_use = _returned(requests.get(f"{base}/Patient/$meta", timeout=30))
        assert in_use == {"tag": [{"system": VIP["system"], "code": "vip"}], "security": [RESTRICTED],
                          "profile": [US_CORE]}
        assert _returned(requests.post(f"{base}/$meta", timeout=30)) == in_use  # system level, GET or POST
        assert _returned(requests.get(f"{base}/Observation/$meta", timeout=30)) == {}

        left = _returned(requests.post(f"{base}/Patient/m1/$meta-delete", headers=FHIR_JSON, timeout=30,
                                       json=_params({"tag": [{"system": VIP["system"], "code": "vip"}],
                                                     "profile": [US_CORE]})))
        assert left == {"security": [RESTRICTED]}
        assert found(f"_tag={VIP['system']}|vip") == [] and found(f"_profile={US_CORE}") == []
        assert found(f"_security={RESTRICTED['system']}|R") == ["m1"]
        assert requests.get(f"{base}/Patient/m1", timeout=30).json()["meta"]["versionId"] == "1"
    finally:
        stop()


def test_meta_operation_errors_are_operation_outcomes(live_server: Any) -> None:
    base = live_server.base
    requests.put(f"{base}/Patient/m2", json={"resourceType": "Patient", "id": "m2"}, headers=FHIR_JSON, timeout=30)

    def post(path: str, body: Any) -> requests.Response:
        return requests.post(f"{base}/{path}", json=body, headers=FHIR_JSON, timeout=30)

    for bad in ({"resourceType": "Patient"}, {"resourceType": "Parameters"},
                _params({"tag": "vip"}), _params({"profile": [{"url": US_CORE}]}), _params({"tag": [{}]})):
        r = post("Patient/m2/$meta-add", bad)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", (bad, r.text)
    assert post("Patient/nope/$meta-add", _params({"tag": [VIP]})).status_code == 404
    assert requests.delete(f"{base}/Patient/m2", timeout=30).status_code in (200, 204)
    assert post("Patient/m2/$meta-add", _params({"tag": [VIP]})).status_code == 410
    assert requests.get(f"{base}/Patient/m2/$meta", timeout=30).status_code == 410
    r = requests.get(f"{base}/Patient/m2/$meta-add", timeout=30)  # an instance-level POST-only operation
    assert r.status_code in (405, 400) and r.json()["resourceType"] == "OperationOutcome"
    rest = requests.get(f"{base}/metadata", timeout=30).json()["rest"][0]
    assert "meta" in {o["name"] for o in rest.get("operation", [])}  # system level
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {"meta", "meta-add", "meta-delete"} <= {o["name"] for o in patient.get("operation", [])}
