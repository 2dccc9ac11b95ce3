"""Wiring of the SMART authorization server into the DigitalFront Flask app."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Flask

from smart_apps.audit import Auditor
from smart_apps.endpoints import register_endpoints
from smart_apps.oauth import build_server
from smart_apps.pages import register_pages
from smart_apps.server import PatientLookup, SmartAuthServer, SmartConfig, base_from_headers
from smart_apps.store import SmartStore

log = logging.getLogger(__name__)


def install(
    app: Flask,
    store: SmartStore,
    config: SmartConfig,
    auditor: Auditor | None = None,
    patient_lookup: PatientLookup | None = None,
) -> SmartAuthServer:
    """Register the OAuth/OIDC endpoints and pages on ``app``; returns the server state."""
    if not app.secret_key:
        app.secret_key = store.get_or_create_key("session", lambda: secrets.token_hex(32))[1]
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    smart = SmartAuthServer(store, config, auditor, patient_lookup)

    def token_url() -> str:
        from flask import request

        return base_from_headers(config, dict(request.headers)).rsplit("/", 1)[0] + "/oauth/token"

    def save_token(token: dict[str, Any], request: Any) -> None:
        from flask import request as flask_request

        smart.save_token(token, request, base_from_headers(config, dict(flask_request.headers)))

    oauth = build_server(app, store, save_token, token_url)
    register_endpoints(app, smart, oauth)
    register_pages(app, smart, oauth)
    app.extensions["smart"] = smart
    return smart


def _patient_lookup(client: Any) -> PatientLookup:
    def lookup(query: str) -> list[tuple[str, str]]:
        params = [("_count", "50")] + ([("name", query)] if query else [])
        out = []
        for p in client.search("Patient", params):
            name = (p.get("name") or [{}])[0]
            text = name.get("text") or " ".join(name.get("given", []) + [name.get("family", "")]).strip()
            out.append((p["id"], text or p["id"]))
        return out

    return lookup


def _add_security(cs: dict[str, Any]) -> None:
    from smart_apps.capability import security_component

    base = cs.get("implementation", {}).get("url", "")
    for rest in cs.get("rest", []):
        rest["security"] = security_component(base)


def _authenticator(smart: SmartAuthServer, fhir_path: str) -> Any:
    """Bearer tokens for the FHIR API; ``GET /metadata`` stays public (SMART discovery needs it)
    and gets an empty-scope context that may do nothing else."""
    from flask import has_request_context, request

    from fhir_server.model import RequestContext

    metadata = fhir_path.rstrip("/") + "/metadata"

    def authenticate(headers: Any) -> RequestContext:
        if (
            has_request_context()
            and request.method in ("GET", "HEAD")
            and request.path.rstrip("/") == metadata
            and not headers.get("Authorization")
        ):
            return RequestContext(scopes=frozenset())
        return smart.authenticate(headers)

    return authenticate


def _audit_refusal(smart: SmartAuthServer) -> Any:
    """A request a valid token's scopes refuse (403) is a security alert like a bad token: an AuditEvent
    (subtype ``denied``, outcome 4) naming the client, the user and what was refused."""

    def audit(ctx: Any, req: Any, resp: Any) -> None:
        issues = (resp.resource or {}).get("issue") or [{}]
        why = issues[0].get("diagnostics", "forbidden")
        smart.audit("denied", False, client_id=ctx.client_id, user=ctx.subject, fhir_user=ctx.fhir_user,
                    detail=f"{req.method} {req.path or '/'}: {why}")

    return audit


def init_app(app: Flask, services: Any) -> None:
    settings = services.settings
    store = SmartStore(services.engine)
    config = SmartConfig(
        base_url=settings.base_url, registration_open=settings.extra.get("smart_registration", "on") != "off"
    )

    def sink(event: dict[str, Any]) -> None:
        services.client.create(event)

    smart = install(app, store, config, Auditor(sink), _patient_lookup(services.client))
    services.router.capability_extras.append(_add_security)
    if settings.auth:
        services.authenticator = _authenticator(smart, config.fhir_path)
        services.on_forbidden = _audit_refusal(smart)
    else:
        log.warning("DIGITALFRONT_AUTH=off: the FHIR API accepts requests WITHOUT authorization (development only)")
    try:
        from fhir_server.operations.export import register as register_export
    except ImportError:
        return
    register_export(services.router, settings.data_dir, requires_token=settings.auth)
