"""The SMART server wired into the real DigitalFront app (create_app) behind a real WSGI server:
enforcement through the router's hooks, AuditEvents, and Bulk export over HTTP."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from pathlib import Path

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.integration.smart.smart_flow import authorize_params, exchange, login_and_consent, pkce

SYNTHEA = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpora" / "synthea-r4"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from flask import Flask

    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from fhir_server.flask_adapter import init_fhir
    from smart_apps.web import init_app
    from tests.conftest import start_live_server

    files = sorted(SYNTHEA.glob("*.json.gz"))[:2]
    if not files:
        pytest.skip(f"Synthea corpus not found at {SYNTHEA}")
    tmp = tmp_path_factory.mktemp("live")
    settings = Settings(database_url=f"sqlite:///{tmp / 'fhir.db'}", auth=True, data_dir=str(tmp / "var"),
                        validate_writes=False)
    services = build_services(settings)
    # create_app's wiring, restricted to the FHIR core and this package (other plugins are tested
    # by their owners; this keeps these tests independent of their state).
    app = Flask("digitalfront-smart-test")
    app.extensions["digitalfront"] = services
    init_app(app, services)
    init_fhir(app, services)
    live, stop = start_live_server(app)
    for f in files:
        services.client.transaction(json.load(gzip.open(f)))
    smart = live.app.extensions["smart"]
    patients = sorted(st.id for st in services.repo.iter_current(["Patient"]))
    smart.store.add_user("pat", "pat-pass", f"Patient/{patients[0]}")
    smart.store.add_user("doc", "doc-pass", "Practitioner/x")
    live.patients = patients
    live.public = smart.store.add_client(
        "App", ["http://127.0.0.1/cb"], "openid fhirUser launch/patient patient/*.rs patient/*.cruds "
        "patient/Patient.rs", "none")["client_id"]
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS384"}, private=True)
    live.backend = smart.store.add_client("Bulk", [], "system/*.rs", "private_key_jwt",
                                          jwks={"keys": [key.as_dict(private=False)]})["client_id"]
    live.key = key
    yield live
    stop()
    services.engine.dispose()


def user_token(live, scope="launch/patient patient/*.rs", username="pat", password="pat-pass", patient=None):
    live.url, live.base  # noqa: B018
    verifier, challenge = pkce()
    q = login_and_consent(live, authorize_params(live, live.public, scope, challenge), username, password,
                          patient=patient)
    r = exchange(live, q["code"], verifier, live.public)
    assert r.status_code == 200, r.text
    return r.json()


def backend_token(live, scope="system/*.rs"):
    now = int(time.time())
    a = jwt.encode({"alg": "RS384", "kid": "k1"}, {"iss": live.backend, "sub": live.backend, "exp": now + 200,
                   "jti": str(uuid.uuid4()), "aud": live.url + "/oauth/token"}, live.key, algorithms=["RS384"])
    r = requests.post(live.url + "/oauth/token", data={
        "grant_type": "client_credentials", "scope": scope, "client_assertion": a,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def H(token):
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}


def test_metadata_public_with_oauth_uris_and_api_needs_token(live):
    cs = requests.get(live.base + "/metadata").json()
    ext = cs["rest"][0]["security"]["extension"][0]
    assert ext["url"].endswith("oauth-uris")
    assert {e["url"] for e in ext["extension"]} >= {"authorize", "token"}
    r = requests.get(f"{live.base}/Patient/{live.patients[0]}")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"
    doc = requests.get(live.base + "/.well-known/smart-configuration").json()
    assert doc["token_endpoint"] == live.url + "/oauth/token"


def test_patient_token_confined_on_every_path(live):
    mine, other = live.patients[0], live.patients[1]
    h = H(user_token(live)["access_token"])
    assert requests.get(f"{live.base}/Patient/{mine}", headers=h).status_code == 200
    assert requests.get(f"{live.base}/Patient/{other}", headers=h).status_code == 403
    bundle = requests.get(f"{live.base}/Condition", headers=h).json()
    refs = {e["resource"]["subject"]["reference"] for e in bundle.get("entry", [])}
    assert refs == {f"Patient/{mine}"}
    # an explicit search for the other patient's data finds nothing
    assert requests.get(f"{live.base}/Condition?subject=Patient/{other}", headers=h).json().get("total") == 0
    # chained search cannot reach into the other patient either
    assert requests.get(f"{live.base}/Encounter?subject:Patient._id={other}", headers=h).json().get("total") == 0
    # includes of other patients' data never appear
    inc = requests.get(f"{live.base}/Encounter?_include=Encounter:subject", headers=h).json()
    assert {e["resource"]["id"] for e in inc.get("entry", []) if e["resource"]["resourceType"] == "Patient"} \
        <= {mine}
    # history of another patient's resource is refused
    assert requests.get(f"{live.base}/Patient/{other}/_history", headers=h).status_code == 403
    # system-wide search and history are not for patient tokens
    assert requests.get(f"{live.base}/_history", headers=h).status_code == 403
    assert requests.get(live.base, headers=h).status_code == 403
    sys_search = requests.get(f"{live.base}?_type=Condition", headers=h).json()
    assert {e["resource"]["subject"]["reference"] for e in sys_search["entry"]} == {f"Patient/{mine}"}
    # several types at once: each type's confinement holds (whatever the router returns)
    multi = requests.get(f"{live.base}?_type=Condition,Patient", headers=h).json()
    assert {e["resource"].get("subject", {}).get("reference", f"Patient/{e['resource']['id']}")
            for e in multi.get("entry", [])} <= {f"Patient/{mine}"}
    # writes: read-only token cannot create
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": f"Patient/{mine}"}}
    assert requests.post(f"{live.base}/Observation", json=obs, headers=h).status_code == 403


def test_patient_write_scopes_confined(live):
    mine, other = live.patients[0], live.patients[1]
    h = H(user_token(live, "launch/patient patient/*.cruds")["access_token"])
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": f"Patient/{mine}"}}
    h_json = {**h, "Content-Type": "application/fhir+json"}
    assert requests.post(f"{live.base}/Observation", data=json.dumps(obs), headers=h_json).status_code == 201
    obs["subject"]["reference"] = f"Patient/{other}"
    assert requests.post(f"{live.base}/Observation", data=json.dumps(obs), headers=h_json).status_code == 403
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": obs, "request": {"method": "POST", "url": "Observation"}}]}
    r = requests.post(live.base, data=json.dumps(tx), headers=h_json)
    assert r.status_code == 403


def test_a_patient_token_cannot_take_over_another_patients_resource(live):
    """PUT checks the stored version too: relabelling another patient's Observation as one's own (its body is
    then in one's compartment) is 403, directly and in a transaction, and the stored one is unchanged."""
    mine, other = live.patients[0], live.patients[1]
    services = live.app.extensions["digitalfront"]
    theirs = services.client.search("Observation", {"subject": f"Patient/{other}", "_count": "1"})[0]
    h_json = {**H(user_token(live, "launch/patient patient/*.cruds")["access_token"]),
              "Content-Type": "application/fhir+json"}
    hijacked = {**theirs, "subject": {"reference": f"Patient/{mine}"}}
    r = requests.put(f"{live.base}/Observation/{theirs['id']}", data=json.dumps(hijacked), headers=h_json)
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": hijacked, "request": {"method": "PUT", "url": f"Observation/{theirs['id']}"}}]}
    assert requests.post(live.base, data=json.dumps(tx), headers=h_json).status_code == 403
    stored = services.client.read("Observation", theirs["id"])
    assert stored["subject"]["reference"] == f"Patient/{other}" and stored["meta"]["versionId"] == theirs["meta"]["versionId"]
    # one's own resource is still updated, and a new id is still created by PUT
    own = {"resourceType": "Observation", "status": "final", "code": {"text": "own"},
           "subject": {"reference": f"Patient/{mine}"}}
    created = requests.post(f"{live.base}/Observation", data=json.dumps(own), headers=h_json).json()
    changed = requests.put(f"{live.base}/Observation/{created['id']}", headers=h_json,
                           data=json.dumps({**created, "status": "amended"}))
    assert changed.status_code == 200 and changed.json()["meta"]["versionId"] == "2"
    new_id = f"own-{uuid.uuid4().hex[:8]}"
    made = requests.put(f"{live.base}/Observation/{new_id}", data=json.dumps({**own, "id": new_id}), headers=h_json)
    assert made.status_code == 201


def test_limited_type_scope_is_403(live):
    h = H(user_token(live, "launch/patient patient/Patient.rs")["access_token"])
    assert requests.get(f"{live.base}/Patient/{live.patients[0]}", headers=h).status_code == 200
    assert requests.get(f"{live.base}/Condition", headers=h).status_code == 403
    # $everything returns what the grant allows (here the patient alone); a type named in _type must be granted
    everything = requests.get(f"{live.base}/Patient/{live.patients[0]}/$everything", headers=h)
    assert everything.status_code == 200, everything.text
    assert [e["resource"]["resourceType"] for e in everything.json()["entry"]] == ["Patient"]
    named = requests.get(f"{live.base}/Patient/{live.patients[0]}/$everything?_type=Patient,Condition", headers=h)
    assert named.status_code == 403


def test_has_cannot_probe_ungranted_types(live):
    h = H(user_token(live, "launch/patient patient/Patient.rs")["access_token"])
    r = requests.get(f"{live.base}/Patient?_has:Observation:patient:status=final", headers=h)
    assert r.status_code == 403
    chained = requests.get(f"{live.base}/Patient?general-practitioner.name=x", headers=h)
    assert chained.status_code == 403  # Practitioner not granted


def test_multi_type_search_keeps_each_types_restriction(live):
    h = H(user_token(live, "launch/patient patient/*.rs")["access_token"])
    r = requests.get(f"{live.base}/?_type=Patient,Condition&_count=200", headers=h)
    assert r.status_code == 200, r.text
    entries = [e["resource"] for e in r.json().get("entry", [])]
    types = {e["resourceType"] for e in entries}
    assert types == {"Patient", "Condition"}, types
    me = live.patients[0]
    assert all(e["id"] == me for e in entries if e["resourceType"] == "Patient")
    assert all(e["subject"]["reference"].endswith(f"Patient/{me}") for e in entries if e["resourceType"] == "Condition")


def test_audit_events_recorded(live):
    user_token(live)
    login_fail = requests.Session()
    from tests.integration.smart.smart_flow import parse

    _, challenge = pkce()
    page = parse(login_fail.get(live.url + "/oauth/authorize",
                                params=authorize_params(live, live.public, "launch/patient patient/*.rs",
                                                        challenge)).text)
    login_fail.post(live.url + "/oauth/authorize", data=page.fields + [("username", "pat"), ("password", "x")])
    probe = f"MedicationRequest/audit-{uuid.uuid4().hex[:8]}"
    refused = requests.get(f"{live.base}/{probe}", headers=H(user_token(live, "launch/patient patient/Patient.rs")
                                                               ["access_token"]))
    assert refused.status_code == 403
    services = live.services
    events = services.client.search("AuditEvent", [("_count", "200")])
    kinds = {(e["subtype"][0]["code"], e["outcome"]) for e in events}
    assert {("login", "0"), ("login", "4"), ("token", "0"), ("denied", "4")} <= kinds
    denied = [e for e in events if e["subtype"][0]["code"] == "denied" and f"GET {probe}" in e["outcomeDesc"]]
    assert len(denied) == 1 and "do not permit 'read' on MedicationRequest" in denied[0]["outcomeDesc"]
    who = {a["who"].get("display") for a in denied[0]["agent"]} | {
        a["who"].get("identifier", {}).get("value") for a in denied[0]["agent"]}
    assert "pat" in who and live.public in who  # the user and the client that were refused


def test_bulk_export_over_http(live):
    r = requests.get(f"{live.base}/$export", headers={"Prefer": "respond-async"})
    assert r.status_code == 401
    token = backend_token(live)
    h = {**H(token), "Prefer": "respond-async"}
    r = requests.get(f"{live.base}/$export?_type=Patient,Condition", headers=h)
    assert r.status_code == 202, r.text
    status_url = r.headers["Content-Location"]
    for _ in range(300):
        s = requests.get(status_url, headers=H(token))
        if s.status_code != 202:
            break
        assert s.headers.get("X-Progress") and s.headers.get("Retry-After")
        time.sleep(0.2)
    assert s.status_code == 200 and s.headers["Content-Type"].startswith("application/json"), s.text
    manifest = s.json()
    assert manifest["requiresAccessToken"] is True
    by_type = {o["type"]: o for o in manifest["output"]}
    assert set(by_type) == {"Patient", "Condition"} and by_type["Patient"]["count"] == 2
    url = by_type["Patient"]["url"]
    assert requests.get(url).status_code == 401
    f = requests.get(url, headers={"Authorization": f"Bearer {token}"})
    assert f.status_code == 200 and f.headers["Content-Type"].startswith("application/fhir+ndjson")
    assert sorted(json.loads(line)["id"] for line in f.text.splitlines()) == live.patients
    # cancel (delete) the completed job: then the status URL is 404
    assert requests.delete(status_url, headers=H(token)).status_code == 202
    assert requests.get(status_url, headers=H(token)).status_code == 404


def test_python_fhirclient_against_app(live):
    from fhirclient import client
    from fhirclient.models.patient import Patient

    smart = client.FHIRClient(settings={"app_id": live.public, "api_base": live.base,
                                        "redirect_uri": "http://127.0.0.1/cb",
                                        "scope": "launch/patient openid fhirUser patient/*.rs"})
    q = login_and_consent(live, {}, "pat", "pat-pass", url=smart.authorize_url)
    smart.handle_callback(q["_location"])
    assert smart.patient_id == live.patients[0]
    assert Patient.read(smart.patient_id, smart.server).id == live.patients[0]


def test_expired_access_tokens_and_codes_are_refused(live):
    """Lifetimes are enforced where they are used: an access token past ``expires_in`` is 401 invalid_token (and
    audited), an authorization code past its 5 minutes cannot be redeemed. Time is moved by ageing the rows."""
    import sqlalchemy as sa

    from smart_apps.store import codes, digest, tokens

    store = live.app.extensions["smart"].store
    access = user_token(live)["access_token"]
    patient = f"{live.base}/Patient/{live.patients[0]}"
    assert requests.get(patient, headers=H(access)).status_code == 200
    with store.engine.begin() as conn:
        conn.execute(tokens.update().where(tokens.c.access_digest == digest(access))
                     .values(issued_at=tokens.c.issued_at - tokens.c.expires_in - 1))
    r = requests.get(patient, headers=H(access))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert r.json()["resourceType"] == "OperationOutcome"
    verifier, challenge = pkce()
    q = login_and_consent(live, authorize_params(live, live.public, "launch/patient patient/*.rs", challenge),
                          "pat", "pat-pass")
    with store.engine.begin() as conn:
        conn.execute(codes.update().where(codes.c.digest == digest(q["code"])).values(expires_at=sa.literal(0.0)))
    late = exchange(live, q["code"], verifier, live.public)
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


def test_granular_category_scope_filters_reads_and_searches(live):
    """``patient/Observation.rs?category=...|vital-signs`` through the real router: searches return only vital
    signs (the restriction is ANDed in, not a 403), a laboratory Observation's read is 403."""
    cat = "http://terminology.hl7.org/CodeSystem/observation-category"
    services = live.app.extensions["digitalfront"]
    mine = live.patients[0]
    lab = services.client.search("Observation", {"subject": f"Patient/{mine}", "category": f"{cat}|laboratory",
                                                 "_count": "1"})
    vitals = services.client.search("Observation", {"subject": f"Patient/{mine}", "category": f"{cat}|vital-signs"})
    assert lab and vitals  # the Synthea patient has both
    h = H(user_token(live, f"launch/patient patient/Observation.rs?category={cat}|vital-signs")["access_token"])
    found = requests.get(f"{live.base}/Observation", params={"_count": "500"}, headers=h)
    assert found.status_code == 200, found.text
    got = [e["resource"] for e in found.json().get("entry", [])]
    assert {o["id"] for o in got} == {o["id"] for o in vitals}
    assert requests.get(f"{live.base}/Observation/{lab[0]['id']}", headers=h).status_code == 403
    assert requests.get(f"{live.base}/Observation/{vitals[0]['id']}", headers=h).status_code == 200
