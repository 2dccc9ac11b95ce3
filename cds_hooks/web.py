"""Flask wiring: the ``/cds-services`` blueprint (discovery, invocation, feedback) with CORS."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from cds_hooks.auth import ClientAuthenticator
from cds_hooks.cards import check_response
from cds_hooks.config import CdsConfig
from cds_hooks.errors import AuthError, CdsError
from cds_hooks.prefetch import FhirSource, HttpFhirSource, LocalFhirSource, resolve
from cds_hooks.registry import CdsService, ServiceEnv, discover
from cds_hooks.store import CdsStore
from cds_hooks.validation import validate_request

log = logging.getLogger(__name__)


@dataclass
class CdsRuntime:
    services: dict[str, CdsService]
    config: CdsConfig
    auth: ClientAuthenticator
    store: CdsStore
    core: Any  # the app's services object (settings, client, router, authenticator)


def _outcome(status: int, message: str, issues: list[str] | None = None, code: str = "invalid") -> Response:
    issue = [{"severity": "error", "code": code, "diagnostics": message}]
    issue += [{"severity": "error", "code": code, "diagnostics": p} for p in issues or []]
    resp = jsonify({"resourceType": "OperationOutcome", "issue": issue})
    resp.status_code = status
    return resp


def _unauthorized() -> Response:
    resp = jsonify({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]})
    resp.status_code = 401
    resp.headers["WWW-Authenticate"] = "Bearer"
    return resp


def _fhir_base(core: Any) -> str:
    base = (getattr(getattr(core, "settings", None), "base_url", "") or "").rstrip("/")
    if not base:
        base = request.host_url.rstrip("/")
    return base if base.endswith("/fhir") else base + "/fhir"


def make_blueprint(rt: CdsRuntime) -> Blueprint:
    bp = Blueprint("cds_hooks", __name__, url_prefix="/cds-services")

    def audiences() -> list[str]:
        base = (getattr(getattr(rt.core, "settings", None), "base_url", "") or "").rstrip("/")
        if base.endswith("/fhir"):
            base = base[: -len("/fhir")]
        out = [request.base_url]
        if base:
            out.append(base + request.path)
        return out

    def authenticate() -> dict[str, Any]:
        return rt.auth.authenticate(request.headers.get("Authorization"), audiences())

    @bp.after_request
    def cors(resp: Response) -> Response:
        resp.headers["Access-Control-Allow-Origin"] = rt.config.cors_origins
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        resp.headers["Access-Control-Max-Age"] = "600"
        if rt.config.cors_origins != "*":
            resp.headers["Vary"] = "Origin"
        return resp

    @bp.errorhandler(AuthError)
    def on_auth(exc: AuthError) -> Response:
        log.info("CDS client authentication failed: %s", exc)
        return _unauthorized()

    @bp.errorhandler(CdsError)
    def on_cds(exc: CdsError) -> Response:
        code = {412: "not-found", 404: "not-found"}.get(exc.status, "invalid")
        return _outcome(exc.status, exc.message, exc.issues, code)

    @bp.route("", methods=["OPTIONS"], strict_slashes=False)
    @bp.route("/<path:_any>", methods=["OPTIONS"])
    def preflight(_any: str = "") -> Response:
        return Response(status=204)

    @bp.get("", strict_slashes=False)
    def discovery() -> Response:
        authenticate()
        return jsonify({"services": [s.discovery() for s in rt.services.values()]})

    def service_or_404(service_id: str) -> CdsService:
        svc = rt.services.get(service_id)
        if svc is None:
            raise CdsError(404, f"no CDS service {service_id!r}")
        return svc

    def read_json() -> Any:
        body = request.get_json(silent=True, force=True)
        if body is None:
            raise CdsError(400, "the request body must be JSON")
        return body

    @bp.post("/<service_id>")
    def invoke(service_id: str) -> Response:
        authenticate()
        svc = service_or_404(service_id)
        body = read_json()
        validate_request(body, svc.hook)
        fhir_base = _fhir_base(rt.core)
        data = resolve(svc.prefetch, svc.required_prefetch, body, lambda: _source(rt, body, fhir_base))
        env = ServiceEnv(base_url=fhir_base[: -len("/fhir")], fhir_base=fhir_base,
                         smart_launch_url=rt.config.smart_launch_url,
                         settings=getattr(rt.core, "settings", None), extras={"core": rt.core})
        try:
            out = svc.invoke(body, data, env).to_json()
        except CdsError:
            raise
        except Exception:  # noqa: BLE001 - a service bug is a logged 500, never a traceback
            log.exception("CDS service %s failed", service_id)
            return _outcome(500, f"service {service_id} failed", code="exception")
        problems = check_response(out)
        if problems:  # never send a card an EHR would reject
            log.error("service %s produced invalid cards: %s", service_id, problems)
            out["cards"] = [c for c in out["cards"] if not check_response({"cards": [c]})]
            if check_response({"cards": [], "systemActions": out.get("systemActions", [])}):
                out.pop("systemActions", None)
        return jsonify(out)

    @bp.post("/<service_id>/feedback")
    def feedback(service_id: str) -> Response:
        claims = authenticate()
        service_or_404(service_id)
        n = rt.store.add_feedback(service_id, read_json(), claims.get("iss"))
        return jsonify({"stored": n})

    @bp.get("/<service_id>/feedback")
    def feedback_counts(service_id: str) -> Response:
        authenticate()
        service_or_404(service_id)
        counts = rt.store.feedback_counts(service_id).get(service_id, {"accepted": 0, "overridden": 0})
        return jsonify({"service": service_id, **counts})

    return bp


def _source(rt: CdsRuntime, body: dict[str, Any], fhir_base: str) -> FhirSource | None:
    """Where missing prefetch comes from: our repository when fhirServer is us, else HTTP."""
    server = body.get("fhirServer")
    if not server:
        return None
    token = (body.get("fhirAuthorization") or {}).get("access_token")
    client = getattr(rt.core, "client", None)
    if server.rstrip("/") == fhir_base.rstrip("/") and client is not None:
        authn = getattr(rt.core, "authenticator", None)
        if token and authn is not None and hasattr(client, "with_context"):
            try:  # read with the scopes of the token the CDS client handed us
                ctx = authn({"authorization": f"Bearer {token}"})
                return LocalFhirSource(client.with_context(ctx))
            except Exception as exc:  # noqa: BLE001 - a bad token is missing data, not a crash
                log.info("fhirAuthorization rejected by our server: %s", exc)
                return None
        if token or rt.config.local_system_access:
            return LocalFhirSource(client)
        return None
    return HttpFhirSource(server, token, timeout=rt.config.fetch_timeout_s)


def init_app(app: Flask, services: Any, cds_services: list[CdsService] | None = None) -> CdsRuntime:
    """Register ``/cds-services``; ``cds_services`` overrides plugin discovery (tests, benchmarks)."""
    config = CdsConfig.from_settings(getattr(services, "settings", None))
    store = CdsStore(services.engine)
    found = cds_services if cds_services is not None else discover(config.enabled, config.extra_modules)
    rt = CdsRuntime(services={s.id: s for s in found}, config=config,
                    auth=ClientAuthenticator(config.clients, store, config.allow_unsigned),
                    store=store, core=services)
    app.register_blueprint(make_blueprint(rt))
    app.extensions["cds_hooks"] = rt
    if config.warm:
        threading.Thread(target=_warm, args=(rt,), name="cds-warm", daemon=True).start()
    return rt


def _warm(rt: CdsRuntime) -> None:
    """Load models and NLP in the background so no clinician's first call pays for it."""
    settings = getattr(rt.core, "settings", None)
    for svc in rt.services.values():
        try:
            svc.warm(settings)
        except Exception:  # noqa: BLE001 - a failed warm-up only means a slower first call
            log.exception("warm-up of CDS service %s failed", svc.id)
