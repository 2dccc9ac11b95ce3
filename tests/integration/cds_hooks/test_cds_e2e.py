"""End to end over real HTTP: the full app (live_server), Synthea patients loaded through the FHIR API,
signed ES384/RS384 JWTs, and full, partial and no prefetch."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from cds_hooks.cards import check_discovery, check_response
from cds_hooks.client_jwt import generate_key, public_jwks, sign
from tests.conftest import shared_path

ISS = "https://ehr.example.org"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ES, RS = generate_key("ES384", kid="e2e-es"), generate_key("RS384", kid="e2e-rs")
# The CDS services need no terminology tables; skipping the background load of the core code systems keeps
# these tests short on 2 cores.
NO_TX = {"terminology_autoload": "0"}
NO_VALIDATE: dict[str, Any] = {}  # writes are validated as in production


@pytest.fixture
def server(live_server_factory: Any) -> Any:
    clients = json.dumps([{"iss": ISS, "jwks": public_jwks(ES, RS)}])
    return live_server_factory(extra={"cds_clients": clients, **NO_TX}, **NO_VALIDATE)


def load(base: str, prefix: str) -> str:
    path = next(shared_path("corpora", "synthea-r4").glob(f"{prefix}*.json.gz"))
    bundle = json.load(gzip.open(path))
    r = requests.post(base, json=bundle, headers={"Content-Type": "application/fhir+json"}, timeout=120)
    assert r.status_code == 200, r.text[:500]
    for e in r.json()["entry"]:
        m = re.search(r"(?:^|/)Patient/([^/]+)", e["response"]["location"])
        if m:
            return m.group(1)
    raise AssertionError("no Patient in bundle")


def call(server: Any, service: str, body: dict[str, Any], key: Any = ES) -> requests.Response:
    url = f"{server.url}/cds-services/{service}"
    return requests.post(url, json=body, headers={"Authorization": f"Bearer {sign(key, ISS, url)}"}, timeout=60)


def ibuprofen_order(pid: str, base: str) -> dict[str, Any]:
    mr = {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft", "intent": "order",
          "subject": {"reference": f"Patient/{pid}"},
          "medicationCodeableConcept": {"coding": [{"system": RX, "code": "310965",
                                                    "display": "Ibuprofen 200 MG Oral Tablet"}]}}
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"{base}/MedicationRequest/draft-1", "resource": mr}]}


def sign_request(pid: str, base: str) -> dict[str, Any]:
    return {"hookInstance": "6b6c9b4e-0c3c-4e0b-9d2e-2f3f1b0c1a11", "hook": "order-sign",
            "context": {"userId": "Practitioner/example", "patientId": pid,
                        "draftOrders": ibuprofen_order(pid, base)}}


def fetch_prefetch(server: Any, service: str, context: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """What an EHR does: render the discovery templates and query its FHIR server."""
    url = f"{server.url}/cds-services"
    disco = requests.get(url, headers={"Authorization": f"Bearer {sign(ES, ISS, url)}"}, timeout=30).json()
    templates = next(s for s in disco["services"] if s["id"] == service)["prefetch"]
    out = {}
    for k in keys:
        q = re.sub(r"\{\{context\.(\w+)\}\}", lambda m: str(context[m.group(1)]), templates[k])
        out[k] = requests.get(f"{server.base}/{q}", timeout=30).json()
    return out


def test_discovery_over_http_with_both_algorithms(server: Any) -> None:
    url = f"{server.url}/cds-services"
    for key in (ES, RS):
        r = requests.get(url, headers={"Authorization": f"Bearer {sign(key, ISS, url)}"}, timeout=30)
        assert r.status_code == 200 and check_discovery(r.json()) == []
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert requests.get(url, timeout=30).status_code == 401
    r = requests.get(url, headers={"Authorization": f"Bearer {sign(ES, ISS, url + '/x')}"}, timeout=30)
    assert r.status_code == 401


def test_medication_safety_with_no_full_and_partial_prefetch(server: Any) -> None:
    pid = load(server.base, "Lea_Connelly")  # active warfarin
    body = sign_request(pid, server.base)
    # 1. no prefetch: the service reads our repository (fhirServer is us)
    r = call(server, "medication-safety-sign", body | {"fhirServer": server.base}, key=RS)
    assert r.status_code == 200, r.text
    assert check_response(r.json()) == []
    assert [c["summary"] for c in r.json()["cards"]] == ["Major interaction: ibuprofen + warfarin"]
    # 2. full prefetch, no fhirServer
    full = fetch_prefetch(server, "medication-safety-sign", body["context"], ["patient", "medications", "allergies"])
    r = call(server, "medication-safety-sign", body | {"prefetch": full})
    assert [c["summary"] for c in r.json()["cards"]] == ["Major interaction: ibuprofen + warfarin"]
    # 3. partial: only the patient is sent, the rest is fetched with the bearer the EHR hands over
    auth = {"access_token": "ehr-issued-token", "token_type": "Bearer", "expires_in": 300,
            "scope": "patient/*.read", "subject": "cds-service"}
    partial = body | {"prefetch": {"patient": full["patient"]}, "fhirServer": server.base,
                      "fhirAuthorization": auth}
    r = call(server, "medication-safety-sign", partial)
    assert [c["summary"] for c in r.json()["cards"]] == ["Major interaction: ibuprofen + warfarin"]
    # no data source and nothing sent: 412
    assert call(server, "medication-safety-sign", body).status_code == 412


def test_prefetch_from_another_fhir_server_over_http(server: Any, live_server_factory: Any) -> None:
    ehr = live_server_factory(extra=NO_TX, **NO_VALIDATE)  # a separate FHIR server: the service must go over HTTP
    pid = load(ehr.base, "Lea_Connelly")
    body = sign_request(pid, ehr.base) | {"fhirServer": ehr.base}
    r = call(server, "medication-safety-sign", body)
    assert r.status_code == 200, r.text
    assert [c["summary"] for c in r.json()["cards"]] == ["Major interaction: ibuprofen + warfarin"]


def test_sepsis_on_a_synthea_patient_with_fresh_vitals(server: Any) -> None:
    pid = load(server.base, "Adalberto")
    body = {"hookInstance": "0f6a0b1e-4f39-4e8a-9d3a-3a9f1d2c5b77", "hook": "patient-view",
            "fhirServer": server.base, "context": {"userId": "Practitioner/example", "patientId": pid}}
    r = call(server, "sepsis-early-warning", body)
    assert r.status_code == 200 and r.json() == {"cards": []}
    now = datetime.now(UTC)
    for code, value, unit in (("9279-1", 28, "/min"), ("8480-6", 86, "mm[Hg]"), ("8867-4", 128, "/min"),
                              ("59408-5", 90, "%"), ("8310-5", 38.9, "Cel")):
        obs = {"resourceType": "Observation", "status": "final",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                         "code": "vital-signs"}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
               "subject": {"reference": f"Patient/{pid}"},
               "effectiveDateTime": (now - timedelta(minutes=15)).isoformat(timespec="seconds"),
               "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}
        assert requests.post(f"{server.base}/Observation", json=obs, timeout=30).status_code == 201
    r = call(server, "sepsis-early-warning", body, key=RS)
    [card] = r.json()["cards"]
    assert card["indicator"] == "critical" and card["summary"].startswith("Possible sepsis: NEWS2 12, qSOFA 2")
    assert check_response(r.json()) == []
    fb = {"feedback": [{"card": card["uuid"], "outcome": "accepted",
                        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                        "outcomeTimestamp": now.isoformat()}]}
    assert call(server, "sepsis-early-warning/feedback", fb).json() == {"stored": 1}


def test_partial_prefetch_with_a_real_smart_token_when_auth_is_on(live_server_factory: Any) -> None:
    """Auth on: the service reads the rest of the data with the SMART backend-services token the EHR
    obtained from our authorization server; a token we did not issue yields 412, never data."""
    import time
    import uuid

    from joserfc import jwt

    from smart_apps.store import SmartStore

    clients = json.dumps([{"iss": ISS, "jwks": public_jwks(ES, RS)}])
    server = live_server_factory(auth=True, extra={"cds_clients": clients, **NO_TX}, **NO_VALIDATE)
    pid = None
    bundle = json.load(gzip.open(next(shared_path("corpora", "synthea-r4").glob("Lea_Connelly*.json.gz"))))
    for e in server.services.client.transaction(bundle)["entry"]:
        m = re.search(r"(?:^|/)Patient/([^/]+)", e["response"]["location"])
        pid = pid or (m.group(1) if m else None)
    assert pid
    key = generate_key("RS384", kid="backend")
    cid = SmartStore(server.services.engine).add_client("EHR CDS backend", [], "system/*.rs", "private_key_jwt",
                                                        jwks=public_jwks(key))["client_id"]
    now = int(time.time())
    assertion = jwt.encode({"alg": "RS384", "kid": key.kid, "typ": "JWT"},
                           {"iss": cid, "sub": cid, "aud": server.url + "/oauth/token", "exp": now + 240,
                            "iat": now, "jti": str(uuid.uuid4())}, key, algorithms=["RS384"])
    tok = requests.post(server.url + "/oauth/token", data={
        "grant_type": "client_credentials", "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion}, timeout=30)
    assert tok.status_code == 200, tok.text
    auth = {"access_token": tok.json()["access_token"], "token_type": "Bearer", "expires_in": 300,
            "scope": "system/*.rs", "subject": cid}
    patient = requests.get(f"{server.base}/Patient/{pid}", headers={"Authorization": f"Bearer {auth['access_token']}"},
                           timeout=30).json()
    body = sign_request(pid, server.base) | {"fhirServer": server.base, "fhirAuthorization": auth,
                                             "prefetch": {"patient": patient}}
    r = call(server, "medication-safety-sign", body)
    assert [c["summary"] for c in r.json()["cards"]] == ["Major interaction: ibuprofen + warfarin"]
    forged = body | {"fhirAuthorization": auth | {"access_token": "forged"}}
    r = call(server, "sepsis-early-warning", {**forged, "hook": "patient-view",
                                              "context": {"userId": "Practitioner/x", "patientId": pid}})
    assert r.status_code == 200  # sepsis only requires the patient, which was sent
    r = call(server, "medication-safety-sign", {**forged, "prefetch": {}})
    assert r.status_code == 412


def test_discharge_readmission_and_problem_list_on_a_synthea_patient(server: Any) -> None:
    """No prefetch: each service reads what it needs from our FHIR API; Synthea data alone (old stays,
    no notes) gives no card, the hand-made current stay and note make each one fire."""
    import base64

    pid = load(server.base, "Harland_DuBuque")  # 35 inpatient stays years ago, warfarin, digoxin
    now = datetime.now(UTC)

    def post(resource: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(f"{server.base}/{resource['resourceType']}", json=resource, timeout=30)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def hook(hook_name: str, service: str, **ctx: Any) -> list[dict[str, Any]]:
        body = {"hookInstance": "5e4b1b9e-2b7a-4d38-9a35-6b3d8f1f0c42", "hook": hook_name, "fhirServer": server.base,
                "context": {"userId": "Practitioner/example", "patientId": pid, **ctx}}
        r = call(server, service, body, key=RS)
        assert r.status_code == 200, r.text
        assert check_response(r.json()) == []
        return list(r.json()["cards"])

    assert hook("patient-view", "readmission-risk") == []
    assert hook("patient-view", "problem-list-gaps") == []
    subj = {"reference": f"Patient/{pid}"}
    stay = post({"resourceType": "Encounter", "status": "in-progress", "subject": subj,
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                 "period": {"start": (now - timedelta(days=9)).isoformat(timespec="seconds")}})
    [risk] = hook("patient-view", "readmission-risk")
    assert "LACE" in risk["summary"] and "L 5: length of stay 9.0 d" in risk["detail"]
    discharge = hook("encounter-discharge", "discharge-readiness", encounterId=stay["id"])
    assert [c["summary"] for c in discharge] == ["No follow-up appointment after discharge"]
    note = "Impression: known atrial fibrillation, now pneumonia of the right lower lobe. Denies chest pain."
    post({"resourceType": "DocumentReference", "status": "current", "subject": subj,
          "date": now.isoformat(timespec="seconds"), "type": {"text": "Progress note"},
          "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(note.encode()).decode()}}]})
    [gaps] = hook("patient-view", "problem-list-gaps")
    # atrial fibrillation is on Synthea's problem list (SNOMED 49436004): only pneumonia is a gap
    assert [s["label"] for s in gaps["suggestions"]] == ["Add provisional: Pneumonia"]
