"""The SMART authorization server: token bookkeeping, id_token, introspection, and the bearer
token authenticator the FHIR adapter calls on every request."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from fhir_server.errors import unauthorized
from fhir_server.model import RequestContext
from smart_apps.audit import Auditor
from smart_apps.oauth import ACCESS_TOKEN_LIFETIME, REFRESH_LIFETIME, GrantedUser
from smart_apps.store import SmartStore

PatientLookup = Callable[[str], list[tuple[str, str]]]


@dataclass
class SmartConfig:
    """``base_url`` is the FHIR base (``""``: derived from the request's host + ``fhir_path``)."""

    base_url: str = ""
    fhir_path: str = "/fhir"
    registration_open: bool = True
    style_path: str = "/smart/style.json"


def base_from_headers(config: SmartConfig, headers: Mapping[str, str]) -> str:
    if config.base_url:
        return config.base_url.rstrip("/")
    lower = {k.lower(): v for k, v in headers.items()}
    host = lower.get("x-forwarded-host") or lower.get("host") or "localhost"
    proto = lower.get("x-forwarded-proto") or "http"
    return f"{proto}://{host}{config.fhir_path}"


class SmartAuthServer:
    """State shared by the OAuth endpoints, the pages and the authenticator."""

    def __init__(self, store: SmartStore, config: SmartConfig, auditor: Auditor | None = None,
                 patient_lookup: PatientLookup | None = None) -> None:
        self.store = store
        self.config = config
        self.audit = auditor or Auditor()
        self.patient_lookup: PatientLookup = patient_lookup or (lambda _q: [])
        kid, material = store.get_or_create_key("id_token", self._new_rsa)
        self.signing_key = RSAKey.import_key(json.loads(material), parameters={"kid": kid})

    @staticmethod
    def _new_rsa() -> str:
        key = RSAKey.generate_key(2048, private=True)
        return json.dumps(key.as_dict(private=True))

    def jwks(self) -> dict[str, Any]:
        pub: dict[str, Any] = dict(self.signing_key.as_dict(private=False))
        pub.update({"use": "sig", "alg": "RS256", "kid": self.signing_key.kid})
        return {"keys": [pub]}

    # token issue -------------------------------------------------------------
    def save_token(self, token: dict[str, Any], request: Any, base_url: str) -> None:
        """authlib's save_token hook: persist digests and add the SMART launch context to the response."""
        client = request.client
        grant_type = request.payload.grant_type if request.payload else None
        user: GrantedUser | None = request.user
        context: dict[str, Any] = {}
        refreshed = getattr(request, "refresh_token", None)
        if refreshed is not None and grant_type == "refresh_token":
            context = dict(refreshed.row["context"])
        elif user is not None:
            context = dict(user.context, fhirUser=user.fhir_user)
        scope = token.get("scope", "")
        words = set(scope.split())
        expires_in = int(token.get("expires_in", ACCESS_TOKEN_LIFETIME))
        refresh_lifetime = REFRESH_LIFETIME if "offline_access" in words else ACCESS_TOKEN_LIFETIME * 8
        token_id = self.store.save_token(token["access_token"], token.get("refresh_token"), client.client_id,
                                         user.username if user else None, scope, context, expires_in,
                                         refresh_lifetime)
        for key in ("patient", "encounter", "fhirContext", "need_patient_banner", "smart_style_url"):
            if key in context:
                token[key] = context[key]
        if user is not None and "openid" in words and words & {"fhirUser", "profile"}:
            token["id_token"] = self.id_token(user, client.client_id, base_url, context)
        action = "refresh" if grant_type == "refresh_token" else "token"
        self.audit(action, True, client_id=client.client_id, user=user.username if user else None,
                   fhir_user=context.get("fhirUser") or None, detail=f"token {token_id} scope={scope}")

    def id_token(self, user: GrantedUser, client_id: str, issuer: str, context: dict[str, Any]) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": issuer, "sub": user.username, "aud": client_id, "iat": now,
                                  "exp": now + ACCESS_TOKEN_LIFETIME, "fhirUser": context.get("fhirUser", "")}
        nonce = user.nonce or context.get("nonce")
        if nonce:
            claims["nonce"] = nonce
        header = {"alg": "RS256", "kid": self.signing_key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.signing_key)

    # introspection / revocation ---------------------------------------------------
    def introspect(self, token: str) -> dict[str, Any]:
        row = self.store.get_access_token(token)
        kind = "access"
        if row is None:
            row, kind = self.store.get_refresh_token(token), "refresh"
        active = self.store.access_active(row) if kind == "access" else self.store.refresh_active(row)
        if not row or not active:
            return {"active": False}
        ctx = row["context"]
        out: dict[str, Any] = {
            "active": True, "scope": row["scope"], "client_id": row["client_id"], "token_type": "Bearer",
            "iat": int(row["issued_at"]),
            "exp": int(row["issued_at"] + row["expires_in"] if kind == "access" else
                       row["refresh_expires_at"] or row["issued_at"] + REFRESH_LIFETIME),
        }
        if row["username"]:
            out["username"] = out["sub"] = row["username"]
        for key in ("patient", "encounter", "fhirContext", "fhirUser"):
            if ctx.get(key):
                out[key] = ctx[key]
        return out

    def revoke(self, token: str, client_id: str) -> bool:
        """RFC 7009: revoke the grant the token belongs to, when it belongs to ``client_id``."""
        row = self.store.get_access_token(token) or self.store.get_refresh_token(token)
        if row is None or row["client_id"] != client_id:
            return False
        self.store.revoke(row["token_id"])
        self.audit("revoke", True, client_id=client_id, user=row["username"],
                   fhir_user=row["context"].get("fhirUser") or None,
                   detail=f"token {row['token_id']} revoked")
        return True

    # the FHIR API's authenticator ------------------------------------------------
    def authenticate(self, headers: Mapping[str, str]) -> RequestContext:
        """Bearer token → RequestContext; 401 with ``WWW-Authenticate`` when missing or not active."""
        lower = {k.lower(): v for k, v in headers.items()}
        base = base_from_headers(self.config, headers)
        auth = lower.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("An access token is required",
                               headers={"WWW-Authenticate": f'Bearer realm="{base}"'})
        row = self.store.get_access_token(value.strip())
        if not self.store.access_active(row):
            self.audit("denied", False, detail="invalid, expired or revoked access token")
            raise unauthorized("The access token is invalid, expired or revoked", headers={
                "WWW-Authenticate": f'Bearer realm="{base}", error="invalid_token"'})
        assert row is not None
        ctx = row["context"]
        return RequestContext(base_url=base, scopes=frozenset(row["scope"].split()),
                              subject=row["username"] or row["client_id"], client_id=row["client_id"],
                              patient=ctx.get("patient"), encounter=ctx.get("encounter"),
                              fhir_user=ctx.get("fhirUser") or None, token_id=row["token_id"])
