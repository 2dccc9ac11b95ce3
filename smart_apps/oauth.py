"""authlib wiring: client/code/token models and the SMART grants.

The grants are authlib's, specialised for SMART App Launch 2.2: PKCE S256
only and mandatory, refresh tokens only for ``offline_access``/``online_access``
and only narrowing, Backend Services ``client_credentials`` with
``private_key_jwt`` (RS384/ES384, ``exp`` at most 5 minutes ahead, ``jti``
replay refused) limited to ``system/`` scopes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from joserfc.jwk import KeySet

from fhir_server.authz import is_valid_scope, parse_scope, scope_within
from smart_apps.store import SmartStore

ACCESS_TOKEN_LIFETIME = 3600
CODE_LIFETIME = 300
REFRESH_LIFETIME = 90 * 24 * 3600
MAX_ASSERTION_LIFETIME = 300
ASSERTION_ALGS = ("RS384", "ES384")


class SmartClient(ClientMixin):  # type: ignore[misc]
    """A registered app; ``row`` is the smart_client table row."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.client_id: str = row["client_id"]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.row["redirect_uris"]
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Requested scopes that the registration's ceiling covers (silently narrowed)."""
        ceiling = scope_to_list(self.row["scope"]) or []
        wanted = scope_to_list(scope) or []
        return " ".join(s for s in wanted if scope_within(s, ceiling))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row["redirect_uris"]

    def check_client_secret(self, client_secret: str) -> bool:
        import hmac

        from smart_apps.store import digest

        stored = self.row["secret_digest"]
        return bool(stored) and hmac.compare_digest(stored, digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return bool(method == self.row["auth_method"])
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row["grant_types"]

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row["grant_types"]


@dataclass
class GrantedUser:
    """The resource owner plus what they approved (scope and launch context)."""

    username: str
    fhir_user: str
    scope: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    nonce: str | None = None

    def get_user_id(self) -> str:
        return self.username


class SmartCode(AuthorizationCodeMixin):  # type: ignore[misc]
    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row

    def get_redirect_uri(self) -> str:
        return str(self.row["redirect_uri"])

    def get_scope(self) -> str:
        return str(self.row["scope"])

    def get_nonce(self) -> str | None:
        return self.row.get("nonce")

    def get_auth_time(self) -> int | None:
        return None


class SmartRefresh:
    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row

    def check_client(self, client: SmartClient) -> bool:
        return bool(self.row["client_id"] == client.client_id)

    def get_scope(self) -> str:
        return str(self.row["scope"])

    def is_expired(self) -> bool:
        return not SmartStore.refresh_active(self.row)

    def is_revoked(self) -> bool:
        return bool(self.row["revoked"])


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only, mandatory at the authorization endpoint already."""

    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: SmartCode) -> str | None:
        return authorization_code.row.get("code_challenge")

    def get_authorization_code_challenge_method(self, authorization_code: SmartCode) -> str | None:
        return authorization_code.row.get("code_challenge_method")


CLIENT_AUTH = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]


def _wants_refresh(client: SmartClient, scope: str) -> bool:
    words = set(scope.split())
    return client.check_grant_type("refresh_token") and bool(words & {"offline_access", "online_access"})


class SmartAuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH
    store: SmartStore  # set by build_server

    def save_authorization_code(self, code: str, request: Any) -> None:
        user: GrantedUser = request.user
        data = request.payload.data
        self.store.save_code(
            code, client_id=request.client.client_id, username=user.username,
            redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
            scope=user.scope, code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"), nonce=data.get("nonce"),
            context=dict(user.context, fhirUser=user.fhir_user), expires_at=time.time() + CODE_LIFETIME)

    def query_authorization_code(self, code: str, client: SmartClient) -> SmartCode | None:
        row = self.store.get_code(code)
        if not row or row["client_id"] != client.client_id or row["expires_at"] < time.time():
            return None
        if not self.store.consume_code(code):
            return None  # reused: invalid_grant
        return SmartCode(row)

    def delete_authorization_code(self, authorization_code: SmartCode) -> None:
        return None  # consumed atomically in query_authorization_code

    def authenticate_user(self, authorization_code: SmartCode) -> GrantedUser:
        ctx = dict(authorization_code.row["context"])
        return GrantedUser(authorization_code.row["username"], ctx.pop("fhirUser", ""),
                           authorization_code.get_scope(), ctx, authorization_code.get_nonce())

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client, code = self.request.client, self.request.authorization_code
        user = self.authenticate_user(code)
        self.request.user = user
        scope = code.get_scope()
        refresh = _wants_refresh(client, scope)
        token = self.generate_token(user=user, scope=scope, include_refresh_token=refresh)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SmartRefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH
    INCLUDE_NEW_REFRESH_TOKEN = True
    store: SmartStore

    def authenticate_refresh_token(self, refresh_token: str) -> SmartRefresh | None:
        row = self.store.get_refresh_token(refresh_token)
        return SmartRefresh(row) if row and self.store.refresh_active(row) else None

    def _validate_token_scope(self, token: SmartRefresh) -> None:
        scope = self.request.payload.scope
        if scope and not all(scope_within(s, scope_to_list(token.get_scope())) for s in scope_to_list(scope)):
            raise InvalidScopeError("A refresh may only narrow the originally granted scopes")

    def authenticate_user(self, refresh_token: SmartRefresh) -> GrantedUser:
        row = refresh_token.row
        ctx = dict(row["context"])
        return GrantedUser(row["username"] or "", ctx.pop("fhirUser", ""), row["scope"], ctx)

    def revoke_old_credential(self, refresh_token: SmartRefresh) -> None:
        self.store.revoke(refresh_token.row["token_id"])


class SmartClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """SMART Backend Services: only asymmetric client authentication and system/ scopes."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def validate_requested_scope(self) -> None:
        scope = self.request.payload.scope
        if not scope:
            raise InvalidScopeError("Backend Services require a 'scope' of system/ scopes")
        for s in scope_to_list(scope):
            rule = parse_scope(s)
            if rule is None or rule.level != "system":
                raise InvalidScopeError(f"Only system/ scopes may be requested here, not {s!r}")

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client = self.request.client
        scope = client.get_allowed_scope(self.request.payload.scope)
        if not scope:
            raise InvalidScopeError("None of the requested scopes is registered for this client")
        token = self.generate_token(scope=scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """``private_key_jwt`` client authentication (RFC 7523) as SMART Backend Services profiles it."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, store: SmartStore, token_url: Any) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.store = store
        self._token_url = token_url

    def get_audiences(self) -> list[str]:
        return [self._token_url()]

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        headers, claims = super().extract_assertion(assertion)
        if headers.get("alg") not in ASSERTION_ALGS:
            raise InvalidClientError(description=f"Client assertions must be signed with {ASSERTION_ALGS}")
        return headers, claims

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        """As authlib's, but with SMART's RS384/ES384 (joserfc does not enable RS384 by default)."""
        from joserfc import jwt as _jwt
        from joserfc.errors import JoseError

        try:
            token = _jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGS))
        except JoseError as e:
            raise InvalidClientError(description=e.description) from e
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > time.time() + MAX_ASSERTION_LIFETIME + self.leeway:
            raise InvalidClientError(description="Client assertion 'exp' must be at most 5 minutes ahead")
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: str) -> bool:
        return self.store.remember_jti(str(claims["iss"]), str(jti), float(claims["exp"]))

    def resolve_client_public_key(self, client: SmartClient) -> KeySet:
        if client.row["jwks"]:
            return KeySet.import_key_set(client.row["jwks"])
        resp = requests.get(client.row["jwks_uri"], timeout=5)
        resp.raise_for_status()
        return KeySet.import_key_set(resp.json())


def build_server(app: Any, store: SmartStore, save_token: Any, token_url: Any) -> AuthorizationServer:
    """An authlib AuthorizationServer with the SMART grants registered."""
    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {
        "authorization_code": ACCESS_TOKEN_LIFETIME, "refresh_token": ACCESS_TOKEN_LIFETIME,
        "client_credentials": 300})
    app.config.setdefault("OAUTH2_REFRESH_TOKEN_GENERATOR", True)

    def query_client(client_id: str) -> SmartClient | None:
        row = store.get_client(client_id)
        return SmartClient(row) if row else None

    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)

    def validate_scope(scope: str | None) -> None:
        bad = [s for s in scope_to_list(scope) or [] if not is_valid_scope(s)]
        if bad:
            raise InvalidScopeError(f"Unknown scopes: {' '.join(bad)}")

    server.validate_requested_scope = validate_scope  # type: ignore[method-assign]
    SmartAuthorizationCodeGrant.store = store
    SmartRefreshTokenGrant.store = store
    server.register_grant(SmartAuthorizationCodeGrant, [S256Only(required=True)])
    server.register_grant(SmartRefreshTokenGrant)
    server.register_grant(SmartClientCredentialsGrant)
    server.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(store, token_url))
    return server


__all__ = ["GrantedUser", "InvalidGrantError", "SmartClient", "build_server"]
