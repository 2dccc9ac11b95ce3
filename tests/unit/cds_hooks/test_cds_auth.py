"""JWT client authentication: algorithms, iss/jku allowlist, aud, exp/iat, jti replay, dev mode."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from flask import Flask, jsonify
from joserfc import jwt
from joserfc.jwk import OctKey

from cds_hooks.auth import ClientAuthenticator, JwksCache, TrustedClient
from cds_hooks.client_jwt import generate_key, public_jwks, sign
from cds_hooks.errors import AuthError
from tests.unit.cds_hooks.cds_testutil import ISS

AUD = "http://localhost/cds-services"


def _b64(d: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_both_algorithms_are_accepted_over_http(cds: Any, alg: str) -> None:
    key = cds.es if alg == "ES384" else cds.rs
    r = cds.get("/cds-services", key=key)
    assert r.status_code == 200


def test_401_carries_no_detail(cds: Any) -> None:
    r = cds.http.get("/cds-services", headers={"Authorization": f"Bearer {cds.token('/elsewhere')}"})
    assert r.status_code == 401
    assert "aud" not in r.get_data(as_text=True) and "diagnostics" not in r.get_data(as_text=True)


def _auth(es: Any, rs: Any, **kw: Any) -> ClientAuthenticator:
    return ClientAuthenticator([TrustedClient(ISS, jwks=public_jwks(es, rs))], **kw)


def test_rejections(es_key: Any, rs_key: Any) -> None:
    a = _auth(es_key, rs_key)
    now = int(time.time())
    bad = {
        "wrong aud": sign(es_key, ISS, "http://localhost/cds-services/other"),
        "expired": sign(es_key, ISS, AUD, now=now - 1000),
        "iat in the future": sign(es_key, ISS, AUD, now=now + 600),
        "lifetime over 5 min": sign(es_key, ISS, AUD, ttl=3600),
        "untrusted iss": sign(es_key, "https://evil.example", AUD),
        "unknown key": sign(generate_key("ES384", kid="es-1"), ISS, AUD),
        "not yet valid": sign(es_key, ISS, AUD, nbf=now + 600),
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(
            {"iss": ISS, "aud": AUD, "exp": now + 60, "iat": now, "jti": "n"}) + ".",
        "HS256": jwt.encode({"alg": "HS256"}, {"iss": ISS, "aud": AUD, "exp": now + 60, "iat": now,
                                               "jti": "h"}, OctKey.import_key("k" * 32)),
        "garbage": "abc.def",
    }
    for name, token in bad.items():
        with pytest.raises(AuthError):
            a.authenticate(f"Bearer {token}", [AUD])
        assert name
    with pytest.raises(AuthError):
        a.authenticate(None, [AUD])
    with pytest.raises(AuthError):
        a.authenticate("Basic dXNlcjpwYXNz", [AUD])
    no_jti = jwt.encode({"alg": "ES384", "kid": "es-1"}, {"iss": ISS, "aud": AUD, "exp": now + 60,
                                                          "iat": now}, es_key, algorithms=["ES384"])
    with pytest.raises(AuthError, match="jti"):
        a.authenticate(f"Bearer {no_jti}", [AUD])


def test_epic_style_extra_claims_and_replay(es_key: Any, rs_key: Any) -> None:
    a = _auth(es_key, rs_key)
    token = sign(rs_key, ISS, AUD, sub="epic-client-id", nbf=int(time.time()) - 5)
    assert a.authenticate(f"Bearer {token}", [AUD])["sub"] == "epic-client-id"
    with pytest.raises(AuthError, match="replay"):
        a.authenticate(f"Bearer {token}", [AUD])


def test_replay_is_refused_across_processes_via_the_store(cds: Any) -> None:
    token = cds.token("/cds-services")
    headers = {"Authorization": f"Bearer {token}"}
    assert cds.http.get("/cds-services", headers=headers).status_code == 200
    assert cds.http.get("/cds-services", headers=headers).status_code == 401
    assert cds.runtime.store.first_use(ISS, "fresh", int(time.time()) + 60)


def test_jku_allowlist_and_fetch(es_key: Any, fhir_http: Any) -> None:
    app = Flask("jwks")
    calls: list[int] = []

    @app.get("/jwks.json")
    def jwks() -> Any:
        calls.append(1)
        return jsonify(public_jwks(es_key))

    srv = fhir_http(app)
    jku = srv.url + "/jwks.json"
    a = ClientAuthenticator([TrustedClient(ISS, jku=[jku])], jwks_cache=JwksCache())
    for _ in range(3):
        assert a.authenticate(f"Bearer {sign(es_key, ISS, AUD, jku=jku)}", [AUD])["iss"] == ISS
    assert len(calls) == 1  # cached
    with pytest.raises(AuthError, match="allowlisted"):
        a.authenticate(f"Bearer {sign(es_key, ISS, AUD, jku=srv.url + '/other.json')}", [AUD])
    with pytest.raises(AuthError):  # no jku and no configured keys
        a.authenticate(f"Bearer {sign(es_key, ISS, AUD)}", [AUD])


def test_keys_from_a_configured_jwks_url(es_key: Any, rs_key: Any, fhir_http: Any) -> None:
    """An EHR configured by the URL of its JWKS (no jku in its tokens): the keys are fetched from it once and
    cached; a token signed with a key the JWKS does not hold is refused."""
    app = Flask("ehr-keys")
    calls: list[int] = []

    @app.get("/.well-known/jwks.json")
    def jwks() -> Any:
        calls.append(1)
        return jsonify(public_jwks(es_key))

    srv = fhir_http(app)
    a = ClientAuthenticator([TrustedClient(ISS, jwks_url=srv.url + "/.well-known/jwks.json")],
                            jwks_cache=JwksCache())
    for _ in range(2):
        assert a.authenticate(f"Bearer {sign(es_key, ISS, AUD)}", [AUD])["iss"] == ISS
    assert len(calls) == 1
    with pytest.raises(AuthError):
        a.authenticate(f"Bearer {sign(rs_key, ISS, AUD)}", [AUD])  # not in that JWKS


def test_development_mode_accepts_unsigned_calls_only_when_enabled(make_cds: Any) -> None:
    assert make_cds().http.get("/cds-services").status_code == 401
    dev = make_cds(cds_allow_unsigned="true")
    assert dev.http.get("/cds-services").status_code == 200
    assert dev.http.get("/cds-services", headers={"Authorization": "Bearer x.y.z"}).status_code == 401
