"""OAuth 2.0 / OIDC / SMART discovery endpoints (token, introspect, revoke, register, JWKS)."""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from fhir_server.validation.primitives import has_control_characters
from smart_apps.server import SmartAuthServer, base_from_headers

log = logging.getLogger(__name__)

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.rs",
    "user/*.cruds",
    "system/*.rs",
    "system/*.cruds",
    "patient/*.read",
    "patient/*.write",
    "user/*.read",
    "user/*.write",
    "system/*.read",
]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def urls(base: str) -> dict[str, str]:
    """Absolute endpoint URLs for a FHIR base (server root = base minus its path)."""
    root = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return {
        "authorization_endpoint": f"{root}/oauth/authorize",
        "token_endpoint": f"{root}/oauth/token",
        "introspection_endpoint": f"{root}/oauth/introspect",
        "revocation_endpoint": f"{root}/oauth/revoke",
        "registration_endpoint": f"{root}/oauth/register",
        "jwks_uri": f"{root}/oauth/jwks",
        "management_endpoint": f"{root}/ehr",
        "userinfo_endpoint": f"{root}/oauth/userinfo",
    }


def smart_configuration(base: str) -> dict[str, Any]:
    u = urls(base)
    return {
        "issuer": base,
        "jwks_uri": u["jwks_uri"],
        "authorization_endpoint": u["authorization_endpoint"],
        "token_endpoint": u["token_endpoint"],
        "introspection_endpoint": u["introspection_endpoint"],
        "revocation_endpoint": u["revocation_endpoint"],
        "registration_endpoint": u["registration_endpoint"],
        "management_endpoint": u["management_endpoint"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES_SUPPORTED,
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(base: str) -> dict[str, Any]:
    u = urls(base)
    return {
        "issuer": base,
        "authorization_endpoint": u["authorization_endpoint"],
        "token_endpoint": u["token_endpoint"],
        "jwks_uri": u["jwks_uri"],
        "userinfo_endpoint": u["userinfo_endpoint"],
        "registration_endpoint": u["registration_endpoint"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "nonce"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        "code_challenge_methods_supported": ["S256"],
    }


def _json(body: Any, status: int = 200, cors: bool = False, no_store: bool = False) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    if cors:
        resp.headers["Access-Control-Allow-Origin"] = "*"
    if no_store:
        resp.headers.update(NO_STORE)
    return resp


def reject_nul() -> Response | None:
    """A NUL in a form or query value is never a client id, code or token (and PostgreSQL refuses it in SQL)."""
    if request.mimetype == "application/x-www-form-urlencoded" or request.args:
        if any("\x00" in k or "\x00" in v for k, v in request.values.items(multi=True)):
            return _oauth_error("invalid_request", "a parameter contains a NUL character")
    return None


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return _json({"error": error, "error_description": description}, status, cors=True, no_store=True)


def register_endpoints(app: Flask, smart: SmartAuthServer, oauth: Any) -> None:
    bp = Blueprint("smart_oauth", __name__)
    bp.before_request(reject_nul)

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        """OAuth clients read ``error`` (RFC 6749 ``server_error``), not an HTML page."""
        if isinstance(exc, HTTPException):
            return exc
        log.exception("unhandled error for %s %s", request.method, request.path)
        return _oauth_error("server_error", "internal error; it has been logged", 500)
    fhir = smart.config.fhir_path.rstrip("/")

    def base() -> str:
        return base_from_headers(smart.config, dict(request.headers))

    @bp.get(f"{fhir}/.well-known/smart-configuration")
    def smart_config() -> Response:
        return _json(smart_configuration(base()), cors=True)

    @bp.get(f"{fhir}/.well-known/openid-configuration")
    @bp.get("/.well-known/openid-configuration")
    def oidc_config() -> Response:
        return _json(openid_configuration(base()), cors=True)

    @bp.get("/oauth/jwks")
    def jwks() -> Response:
        return _json(smart.jwks(), cors=True)

    @bp.get(smart.config.style_path)
    def style() -> Response:
        return _json(
            {
                "color_background": "#edeae3",
                "color_highlight": "#69b5ce",
                "color_modal_backdrop": "",
                "color_success": "#227700",
                "color_error": "#9e2d2d",
                "color_text": "#303030",
                "dim_border_radius": "6px",
                "dim_font_size": "13px",
                "dim_spacing_size": "20px",
                "font_family_body": "sans-serif",
                "font_family_heading": "sans-serif",
            },
            cors=True,
        )

    @bp.route("/oauth/token", methods=["POST", "OPTIONS"])
    def token() -> Any:
        if request.method == "OPTIONS":
            return _json({}, cors=True)
        resp = oauth.create_token_response()
        resp.headers["Access-Control-Allow-Origin"] = "*"
        resp.headers.update(NO_STORE)
        if resp.status_code >= 400:
            smart.audit(
                "token",
                False,
                client_id=request.form.get("client_id"),
                detail=(resp.get_data(as_text=True) or "")[:500],
            )
        return resp

    def _authenticated_client() -> Any:
        try:
            return oauth.authenticate_client(
                oauth.create_oauth2_request(request),
                ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
                endpoint="token",
            )
        except OAuth2Error:
            return None

    @bp.post("/oauth/introspect")
    def introspect() -> Response:
        token_value = request.form.get("token", "")
        bearer = request.headers.get("Authorization", "")
        caller_ok = False
        if bearer.lower().startswith("bearer "):
            caller_ok = smart.store.access_active(smart.store.get_access_token(bearer[7:].strip()))
        elif bearer.lower().startswith("basic ") or "client_assertion" in request.form:
            caller_ok = _authenticated_client() is not None
        if not caller_ok:
            return _oauth_error(
                "invalid_client", "introspection needs client authentication or a bearer token", 401
            )
        if not token_value:
            return _oauth_error("invalid_request", "missing 'token'")
        return _json(smart.introspect(token_value), no_store=True)

    @bp.post("/oauth/revoke")
    def revoke() -> Response:
        client = _authenticated_client()
        if client is None:
            return _oauth_error("invalid_client", "client authentication failed", 401)
        token_value = request.form.get("token", "")
        if not token_value:
            return _oauth_error("invalid_request", "missing 'token'")
        smart.revoke(token_value, client.client_id)
        return _json({}, cors=True, no_store=True)  # RFC 7009: 200 whether or not it was known

    @bp.get("/oauth/userinfo")
    def userinfo() -> Response:
        bearer = request.headers.get("Authorization", "")
        row = (
            smart.store.get_access_token(bearer[7:].strip()) if bearer.lower().startswith("bearer ") else None
        )
        if row is None or not smart.store.access_active(row) or "openid" not in row["scope"].split():
            return _oauth_error("invalid_token", "an active token with 'openid' is required", 401)
        return _json({"sub": row["username"], "fhirUser": row["context"].get("fhirUser")}, no_store=True)

    @bp.post("/oauth/register")
    def register() -> Response:
        """RFC 7591 dynamic registration of user-facing apps (Backend Services clients: CLI only)."""
        if not smart.config.registration_open:
            return _oauth_error(
                "access_denied", "dynamic registration is disabled; use `digitalfront smart`", 403
            )
        meta = request.get_json(silent=True)
        if not isinstance(meta, dict):
            return _oauth_error("invalid_client_metadata", "the body must be a JSON object")
        if has_control_characters(meta):
            return _oauth_error("invalid_client_metadata", "client metadata must not contain control characters")
        method = meta.get("token_endpoint_auth_method", "client_secret_basic")
        uris = meta.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) and "://" in u for u in uris):
            return _oauth_error("invalid_redirect_uri", "redirect_uris must be a non-empty list of URLs")
        grant_types = meta.get("grant_types") or ["authorization_code", "refresh_token"]
        if not isinstance(grant_types, list) or not set(map(str, grant_types)) <= {"authorization_code",
                                                                                   "refresh_token"}:
            return _oauth_error(
                "invalid_client_metadata", "only authorization_code/refresh_token apps may self-register"
            )
        scope = str(meta.get("scope") or "openid fhirUser launch launch/patient offline_access patient/*.rs")
        if any(s.startswith("system/") for s in scope.split()):
            return _oauth_error("invalid_client_metadata", "system/ scopes are not self-registrable")
        try:
            row = smart.store.add_client(
                str(meta.get("client_name") or "unnamed app"),
                uris,
                scope,
                method,
                grant_types=grant_types,
                jwks=meta.get("jwks"),
                jwks_uri=meta.get("jwks_uri"),
                launch_uri=meta.get("initiate_login_uri"),
            )
        except ValueError as e:
            return _oauth_error("invalid_client_metadata", str(e))
        out = {
            "client_id": row["client_id"],
            "client_name": row["client_name"],
            "redirect_uris": uris,
            "grant_types": grant_types,
            "token_endpoint_auth_method": method,
            "scope": scope,
            "client_id_issued_at": int(row["created_at"]),
        }
        if "client_secret" in row:
            out.update(client_secret=row["client_secret"], client_secret_expires_at=0)
        return _json(out, 201, no_store=True)

    app.register_blueprint(bp)
