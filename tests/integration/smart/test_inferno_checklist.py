"""Inferno / ONC (g)(10)-style checks of the SMART authorization server over real HTTP."""

from __future__ import annotations

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.integration.smart.smart_flow import authorize_params, exchange, login_and_consent, pkce, redirect_query

SCOPE = "openid fhirUser launch/patient offline_access patient/*.rs"


def _token(server, username="pat", password="pat-pass", scope=SCOPE, patient=None) -> dict:
    verifier, challenge = pkce()
    q = login_and_consent(server, authorize_params(server, server.public_client, scope, challenge),
                          username, password, patient=patient)
    r = exchange(server, q["code"], verifier, server.public_client)
    assert r.status_code == 200, r.text
    return r.json()


def test_discovery_document(smart_server):
    r = requests.get(smart_server.base + "/.well-known/smart-configuration", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    doc = r.json()
    assert doc["authorization_endpoint"] == smart_server.url + "/oauth/authorize"
    assert doc["token_endpoint"] == smart_server.url + "/oauth/token"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    assert {"RS384", "ES384"} <= set(doc["token_endpoint_auth_signing_alg_values_supported"])
    assert {"launch-ehr", "launch-standalone", "permission-v2", "client-confidential-asymmetric",
            "sso-openid-connect", "context-ehr-encounter"} <= set(doc["capabilities"])
    # what this suite exercises is advertised too (SMART 2.2: grant_types_supported is required)
    assert {"client-confidential-symmetric", "permission-offline", "permission-online", "permission-patient",
            "permission-user", "context-standalone-patient"} <= set(doc["capabilities"])
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(doc["grant_types_supported"])
    assert {"client_secret_basic", "none"} <= set(doc["token_endpoint_auth_methods_supported"])
    assert {"openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access"} <= \
        set(doc["scopes_supported"])
    for key in ("introspection_endpoint", "revocation_endpoint", "registration_endpoint", "jwks_uri"):
        assert doc[key].startswith("http://127.0.0.1:")
    oidc = requests.get(smart_server.base + "/.well-known/openid-configuration").json()
    assert oidc["issuer"] == smart_server.base and "RS256" in oidc["id_token_signing_alg_values_supported"]


def test_standalone_patient_launch_with_id_token(smart_server):
    tok = _token(smart_server)
    assert tok["patient"] == "example" and tok["need_patient_banner"] is True
    assert tok["token_type"].lower() == "bearer" and 0 < tok["expires_in"] <= 3600
    assert "refresh_token" in tok and tok["smart_style_url"].endswith("/smart/style.json")
    keys = KeySet.import_key_set(requests.get(smart_server.url + "/oauth/jwks").json())
    claims = jwt.decode(tok["id_token"], keys).claims
    assert claims["fhirUser"] == "Patient/example" and claims["aud"] == smart_server.public_client
    assert claims["iss"] == smart_server.base
    r = requests.get(smart_server.base + "/Patient/example", headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert r.status_code == 200 and r.json()["id"] == "example"


def test_token_response_is_not_cached(smart_server):
    verifier, challenge = pkce()
    q = login_and_consent(smart_server, authorize_params(smart_server, smart_server.public_client, SCOPE, challenge),
                          "pat", "pat-pass")
    r = exchange(smart_server, q["code"], verifier, smart_server.public_client)
    assert r.headers["Cache-Control"] == "no-store"


def test_state_round_trips_and_denial(smart_server):
    _, challenge = pkce()
    params = authorize_params(smart_server, smart_server.public_client, SCOPE, challenge)
    q = login_and_consent(smart_server, params, "pat", "pat-pass", decision="deny")
    assert q["error"] == "access_denied" and q["state"] == params["state"] and "code" not in q


def test_pkce_missing_or_plain_gives_no_code(smart_server):
    s = requests.Session()
    _, challenge = pkce()
    params = authorize_params(smart_server, smart_server.public_client, SCOPE, challenge)
    for drop in ({"code_challenge": None, "code_challenge_method": None}, {"code_challenge_method": "plain"}):
        p = {k: v for k, v in {**params, **drop}.items() if v is not None}
        q = redirect_query(s.get(smart_server.url + "/oauth/authorize", params=p, allow_redirects=False))
        assert q["error"] == "invalid_request" and "code" not in q and q["state"] == params["state"]


def test_wrong_or_missing_code_verifier_is_400(smart_server):
    for verifier in ("x" * 50, ""):
        _, challenge = pkce()
        q = login_and_consent(smart_server,
                              authorize_params(smart_server, smart_server.public_client, SCOPE, challenge),
                              "pat", "pat-pass")
        r = exchange(smart_server, q["code"], verifier, smart_server.public_client)
        assert r.status_code == 400 and r.json()["error"] in ("invalid_grant", "invalid_request")


def test_bad_aud_gives_no_code(smart_server):
    _, challenge = pkce()
    params = authorize_params(smart_server, smart_server.public_client, SCOPE, challenge,
                              aud="http://evil.example/fhir")
    q = redirect_query(requests.get(smart_server.url + "/oauth/authorize", params=params, allow_redirects=False))
    assert q["error"] == "invalid_request" and "code" not in q


def test_unregistered_redirect_uri_is_not_followed(smart_server):
    _, challenge = pkce()
    params = authorize_params(smart_server, smart_server.public_client, SCOPE, challenge,
                              redirect_uri="http://evil.example/cb")
    r = requests.get(smart_server.url + "/oauth/authorize", params=params, allow_redirects=False)
    assert r.status_code == 400 and "evil" not in r.headers.get("Location", "")


def test_reused_code_is_400(smart_server):
    verifier, challenge = pkce()
    q = login_and_consent(smart_server, authorize_params(smart_server, smart_server.public_client, SCOPE, challenge),
                          "pat", "pat-pass")
    assert exchange(smart_server, q["code"], verifier, smart_server.public_client).status_code == 200
    r = exchange(smart_server, q["code"], verifier, smart_server.public_client)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_refresh_narrower_ok_wider_refused(smart_server):
    tok = _token(smart_server)
    url = smart_server.url + "/oauth/token"
    base = {"grant_type": "refresh_token", "client_id": smart_server.public_client}
    wider = requests.post(url, data={**base, "refresh_token": tok["refresh_token"], "scope": "patient/*.cruds"})
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrow = requests.post(url, data={**base, "refresh_token": tok["refresh_token"],
                                      "scope": "patient/Observation.rs offline_access"})
    assert narrow.status_code == 200, narrow.text
    body = narrow.json()
    assert body["scope"] == "patient/Observation.rs offline_access" and body["patient"] == "example"
    # the narrowed token really is narrower on the API
    h = {"Authorization": f"Bearer {body['access_token']}"}
    assert requests.get(smart_server.base + "/Observation/example", headers=h).status_code == 200
    assert requests.get(smart_server.base + "/Patient/example", headers=h).status_code == 403
    # refresh tokens are bound to their client
    other = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                     "client_id": smart_server.ehr_app})
    assert other.status_code in (400, 401)


def test_no_refresh_token_without_offline_or_online_access(smart_server):
    tok = _token(smart_server, scope="launch/patient patient/*.rs")
    assert "refresh_token" not in tok


def test_introspection_active_and_inactive(smart_server):
    tok = _token(smart_server)
    conf = smart_server.confidential
    auth = (conf["client_id"], conf["client_secret"])
    r = requests.post(smart_server.url + "/oauth/introspect", data={"token": tok["access_token"]}, auth=auth)
    body = r.json()
    assert body["active"] is True and body["patient"] == "example" and body["fhirUser"] == "Patient/example"
    assert body["client_id"] == smart_server.public_client and "patient/*.rs" in body["scope"].split()
    r = requests.post(smart_server.url + "/oauth/introspect", data={"token": "not-a-token"}, auth=auth)
    assert r.json() == {"active": False}
    r = requests.post(smart_server.url + "/oauth/introspect", data={"token": tok["access_token"]},
                      auth=(conf["client_id"], "wrong"))
    assert r.status_code == 401


def test_revoked_token_is_401_and_its_refresh_fails(smart_server):
    tok = _token(smart_server)
    h = {"Authorization": f"Bearer {tok['access_token']}"}
    assert requests.get(smart_server.base + "/Patient/example", headers=h).status_code == 200
    r = requests.post(smart_server.url + "/oauth/revoke",
                      data={"token": tok["access_token"], "client_id": smart_server.public_client})
    assert r.status_code == 200
    r = requests.get(smart_server.base + "/Patient/example", headers=h)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    r = requests.post(smart_server.url + "/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"], "client_id": smart_server.public_client})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_unauthenticated_read_is_401(smart_server):
    r = requests.get(smart_server.base + "/Patient/example")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"
    r = requests.get(smart_server.base + "/Patient/example", headers={"Authorization": "Bearer forged"})
    assert r.status_code == 401


def test_limited_scopes_are_403_and_compartment_confined(smart_server):
    tok = _token(smart_server, scope="launch/patient patient/Observation.rs")
    h = {"Authorization": f"Bearer {tok['access_token']}"}
    assert requests.get(smart_server.base + "/Condition/example", headers=h).status_code == 403
    assert requests.get(smart_server.base + "/Observation/example", headers=h).status_code == 200
    assert requests.get(smart_server.base + "/Observation/f001", headers=h).status_code == 403
    bundle = requests.get(smart_server.base + "/Observation", headers=h).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["example"]


def test_practitioner_standalone_uses_patient_picker(smart_server):
    tok = _token(smart_server, "doc", "doc-pass", scope="openid fhirUser launch/patient patient/*.rs",
                 patient="f001")
    assert tok["patient"] == "f001"
    h = {"Authorization": f"Bearer {tok['access_token']}"}
    assert requests.get(smart_server.base + "/Observation/f001", headers=h).status_code == 200
    assert requests.get(smart_server.base + "/Observation/example", headers=h).status_code == 403


def test_wrong_password_and_audit_trail(smart_server):
    _, challenge = pkce()
    params = authorize_params(smart_server, smart_server.public_client, SCOPE, challenge)
    s = requests.Session()
    from tests.integration.smart.smart_flow import parse

    page = parse(s.get(smart_server.url + "/oauth/authorize", params=params).text)
    r = s.post(smart_server.url + "/oauth/authorize", data=page.fields + [("username", "pat"), ("password", "no")],
               allow_redirects=False)
    assert r.status_code == 401 and "Invalid username or password" in r.text
    kinds = {(e["subtype"][0]["code"], e["outcome"]) for e in smart_server.audit}
    assert ("login", "4") in kinds and ("login", "0") in kinds and ("token", "0") in kinds
    assert all(e["resourceType"] == "AuditEvent" for e in smart_server.audit)


def test_confidential_symmetric_client_authenticates_at_the_token_endpoint(smart_server):
    """client-confidential-symmetric: the code is exchanged (and the refresh token used) with the client's
    secret as HTTP Basic; a wrong secret or none at all is 401 invalid_client, and the code stays usable."""
    conf = smart_server.confidential
    verifier, challenge = pkce()
    q = login_and_consent(smart_server, authorize_params(smart_server, conf["client_id"],
                                                         "launch/patient offline_access patient/*.rs", challenge),
                          "pat", "pat-pass")
    wrong = exchange(smart_server, q["code"], verifier, conf["client_id"], auth=(conf["client_id"], "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    anonymous = exchange(smart_server, q["code"], verifier, conf["client_id"])  # client_id alone: not enough
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    r = exchange(smart_server, q["code"], verifier, conf["client_id"], auth=(conf["client_id"], conf["client_secret"]))
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["patient"] == "example" and "refresh_token" in tok
    refreshed = requests.post(smart_server.url + "/oauth/token", auth=(conf["client_id"], conf["client_secret"]),
                              data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != tok["access_token"]
    stolen = requests.post(smart_server.url + "/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"], "client_id": conf["client_id"]})
    assert stolen.status_code == 401  # a confidential client's refresh token is useless without its secret


def test_online_access_gets_a_refresh_token_of_the_session_lifetime(smart_server):
    tok = _token(smart_server, scope="launch/patient online_access patient/*.rs")
    assert "refresh_token" in tok
    row = smart_server.store.get_refresh_token(tok["refresh_token"])
    offline = _token(smart_server, scope="launch/patient offline_access patient/*.rs")
    offline_row = smart_server.store.get_refresh_token(offline["refresh_token"])
    online_life = row["refresh_expires_at"] - row["issued_at"]
    assert 0 < online_life < offline_row["refresh_expires_at"] - offline_row["issued_at"]


def test_the_consent_page_lists_every_scope_asked_for(smart_server):
    """The user approves what the app asked for, so the page shows each requested scope, escaped."""
    import html

    from tests.integration.smart.smart_flow import parse

    scope = "openid fhirUser launch/patient patient/Observation.rs?category=http://x|<lab> offline_access"
    s = requests.Session()
    _, challenge = pkce()
    r = s.get(smart_server.url + "/oauth/authorize", params=authorize_params(
        smart_server, smart_server.public_client, scope, challenge))
    form = parse(r.text)
    r = s.post(smart_server.url + "/oauth/authorize", data=list(form.fields) + [("username", "pat"),
                                                                                 ("password", "pat-pass")])
    assert parse(r.text).title == "Authorize app"
    for word in scope.split():
        assert f"<li><code>{html.escape(word)}</code></li>" in r.text, word
    assert "<lab>" not in r.text  # escaped, never markup
