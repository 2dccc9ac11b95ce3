"""Backend Services (client_credentials + private_key_jwt), EHR launch and dynamic registration."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.integration.smart.smart_flow import authorize_params, exchange, login_and_consent, parse, pkce

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def backend(smart_server):
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa1", "alg": "RS384"}, private=True)
    ec = ECKey.generate_key("P-384", parameters={"kid": "ec1", "alg": "ES384"}, private=True)
    jwks = {"keys": [rsa.as_dict(private=False), ec.as_dict(private=False)]}
    client = smart_server.store.add_client("Bulk client", [], "system/*.rs", "private_key_jwt", jwks=jwks)
    return client["client_id"], rsa, ec


def assertion(server, client_id, key, alg, **over):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": server.url + "/oauth/token", "exp": now + 240,
              "jti": str(uuid.uuid4()), "iat": now}
    claims.update(over)
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


def token(server, jwt_value, scope="system/*.rs", grant_type="client_credentials"):
    return requests.post(server.url + "/oauth/token", data={
        "grant_type": grant_type, "scope": scope, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": jwt_value})


@pytest.mark.parametrize("which,alg", [(1, "RS384"), (2, "ES384")])
def test_backend_token_rs384_and_es384(smart_server, backend, which, alg):
    r = token(smart_server, assertion(smart_server, backend[0], backend[which], alg))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "system/*.rs" and body["expires_in"] <= 300 and "refresh_token" not in body
    assert r.headers["Cache-Control"] == "no-store"
    h = {"Authorization": f"Bearer {body['access_token']}"}
    assert requests.get(smart_server.base + "/Observation/f001", headers=h).status_code == 200


def test_backend_replayed_jti_refused(smart_server, backend):
    a = assertion(smart_server, backend[0], backend[1], "RS384")
    assert token(smart_server, a).status_code == 200
    r = token(smart_server, a)
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


def test_backend_bad_assertions(smart_server, backend):
    cid, rsa, _ = backend
    other = RSAKey.generate_key(2048, parameters={"kid": "rsa1"}, private=True)
    same_key_any_alg = RSAKey.import_key({k: v for k, v in rsa.as_dict(private=True).items() if k != "alg"})
    cases = [
        assertion(smart_server, cid, other, "RS384"),                      # wrong key
        assertion(smart_server, cid, rsa, "RS384", exp=int(time.time()) + 3600),  # exp > 5 min
        assertion(smart_server, cid, rsa, "RS384", exp=int(time.time()) - 120),   # expired
        assertion(smart_server, cid, rsa, "RS384", aud="http://elsewhere/token"),  # wrong aud
        assertion(smart_server, cid, same_key_any_alg, "RS256"),           # alg not allowed
        "not.a.jwt",
    ]
    descriptions: list[str] = []
    for a in cases:
        r = token(smart_server, a)
        assert r.status_code in (400, 401), r.text
        assert r.json()["error"] == "invalid_client"
        descriptions.append(r.json().get("error_description") or "")
    assert "5 minutes" in descriptions[1] and "expired" in descriptions[2] and "aud" in descriptions[3]
    assert "RS384" in descriptions[4]


def test_backend_bad_grant_type_and_scopes(smart_server, backend):
    cid, rsa, _ = backend
    r = token(smart_server, assertion(smart_server, cid, rsa, "RS384"), grant_type="password")
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = token(smart_server, assertion(smart_server, cid, rsa, "RS384"), scope="patient/*.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    # registered for *.rs only: asking for writes yields nothing grantable
    r = token(smart_server, assertion(smart_server, cid, rsa, "RS384"), scope="system/Patient.c")
    assert r.status_code == 400


def test_user_clients_cannot_use_client_credentials(smart_server):
    conf = smart_server.confidential
    r = requests.post(smart_server.url + "/oauth/token", data={"grant_type": "client_credentials",
                                                                 "scope": "system/*.rs"},
                      auth=(conf["client_id"], conf["client_secret"]))
    assert r.status_code in (400, 401)


def test_ehr_launch_carries_patient_and_encounter(smart_server):
    s = requests.Session()
    page = parse(s.get(smart_server.url + "/ehr").text)
    r = s.post(smart_server.url + "/ehr", data=page.fields + [("username", "doc"), ("password", "doc-pass")])
    page = parse(r.text)
    assert page.title == "EHR" and "f001" in page.radios
    r = s.post(smart_server.url + "/ehr/launch", data=page.fields + [
        ("client_id", smart_server.ehr_app), ("_patient", "f001"), ("encounter", "f001")], allow_redirects=False)
    assert r.status_code == 302
    launch_url = urlparse(r.headers["Location"])
    q = {k: v[0] for k, v in parse_qs(launch_url.query).items()}
    assert launch_url.path == "/launch" and q["iss"] == smart_server.base
    verifier, challenge = pkce()
    params = authorize_params(smart_server, smart_server.ehr_app, "openid fhirUser launch patient/*.rs", challenge,
                              launch=q["launch"])
    code = login_and_consent(smart_server, params, "doc", "doc-pass", session=s)["code"]
    tok = exchange(smart_server, code, verifier, smart_server.ehr_app).json()
    assert tok["patient"] == "f001" and tok["encounter"] == "f001" and tok["need_patient_banner"] is False
    assert tok["fhirContext"] == [{"reference": "Encounter/f001"}]
    # a launch id is bound to the practitioner who launched
    verifier, challenge = pkce()
    params = authorize_params(smart_server, smart_server.ehr_app, "launch patient/*.rs", challenge, launch=q["launch"])
    other = login_and_consent(smart_server, params, "pat", "pat-pass")
    assert other["error"] == "invalid_request"


def test_patient_cannot_open_ehr(smart_server):
    s = requests.Session()
    page = parse(s.get(smart_server.url + "/ehr").text)
    r = s.post(smart_server.url + "/ehr", data=page.fields + [("username", "pat"), ("password", "pat-pass")])
    assert r.status_code == 401 and "Only practitioners" in r.text


def test_dynamic_registration(smart_server):
    r = requests.post(smart_server.url + "/oauth/register", json={
        "client_name": "Registered", "redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none",
        "scope": "openid fhirUser launch/patient patient/*.rs"})
    assert r.status_code == 201, r.text
    cid = r.json()["client_id"]
    verifier, challenge = pkce()
    q = login_and_consent(smart_server, authorize_params(smart_server, cid, "launch/patient patient/*.rs", challenge),
                          "pat", "pat-pass")
    assert exchange(smart_server, q["code"], verifier, cid).json()["patient"] == "example"
    bad = requests.post(smart_server.url + "/oauth/register", json={
        "redirect_uris": ["http://127.0.0.1/cb"], "scope": "system/*.rs"})
    assert bad.status_code == 400
    bad = requests.post(smart_server.url + "/oauth/register", json={"client_name": "x", "redirect_uris": []})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_redirect_uri"
    bad = requests.post(smart_server.url + "/oauth/register", json={
        "redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["client_credentials"]})
    assert bad.status_code == 400
    for meta in ({"client_name": "a\x00b", "redirect_uris": ["http://127.0.0.1/cb"]},  # PostgreSQL: a 500
                 {"redirect_uris": ["http://127.0.0.1/c\x07b"]},
                 {"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": 5}):  # was a TypeError: a 500
        bad = requests.post(smart_server.url + "/oauth/register", json=meta)
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_client_metadata", (meta, bad.text)
    for path, form in (("/oauth/token", {"grant_type": "client_credentials", "client_id": "a\x00b"}),
                       ("/oauth/revoke", {"token": "a\x00"}), ("/oauth/authorize", {"client_id": "x\x00"})):
        bad = requests.post(smart_server.url + path, data=form)  # on PostgreSQL these reached SQL: a 500
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_request", (path, bad.text)


def test_capability_security_component(smart_server):
    from smart_apps.capability import OAUTH_URIS, security_component

    sec = security_component(smart_server.base)
    ext = {e["url"]: e["valueUri"] for e in sec["extension"][0]["extension"]}
    assert sec["extension"][0]["url"] == OAUTH_URIS
    doc = requests.get(smart_server.base + "/.well-known/smart-configuration").json()
    assert ext["authorize"] == doc["authorization_endpoint"] and ext["token"] == doc["token_endpoint"]


def test_backend_client_registered_with_a_jwks_uri(smart_server):
    """client-confidential-asymmetric with the keys published at the client's jwks_uri (the SMART Backend
    Services default) rather than registered inline: fetched over HTTP, a foreign key refused."""
    from flask import Flask, jsonify

    from tests.integration.smart.conftest import serve

    key = RSAKey.generate_key(2048, parameters={"kid": "published", "alg": "RS384"}, private=True)
    app = Flask("client-keys")

    @app.get("/.well-known/jwks.json")
    def keys():
        return jsonify({"keys": [key.as_dict(private=False)]})

    url, srv = serve(app)
    try:
        client = smart_server.store.add_client("Published keys", [], "system/*.rs", "private_key_jwt",
                                               jwks_uri=url + "/.well-known/jwks.json")["client_id"]
        r = token(smart_server, assertion(smart_server, client, key, "RS384"))
        assert r.status_code == 200, r.text
        assert requests.get(smart_server.base + "/Observation/f001",
                            headers={"Authorization": f"Bearer {r.json()['access_token']}"}).status_code == 200
        other = RSAKey.generate_key(2048, parameters={"kid": "published", "alg": "RS384"}, private=True)
        refused = token(smart_server, assertion(smart_server, client, other, "RS384"))
        assert refused.status_code in (400, 401) and refused.json()["error"] == "invalid_client"
    finally:
        srv.shutdown()
