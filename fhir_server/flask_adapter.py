"""Flask adapter: builds a ``FhirRequest`` and writes the ``FhirResponse``; no FHIR logic here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from fhir_server import formats
from fhir_server.errors import Issue, OperationOutcomeError, operation_outcome
from fhir_server.model import FhirRequest, FhirResponse, RequestContext

log = logging.getLogger(__name__)

Authenticator = Callable[[Mapping[str, str]], RequestContext]


def base_url_of(explicit: str) -> str:
    return explicit.rstrip("/") if explicit else request.host_url.rstrip("/") + "/fhir"


def render_response(resp: FhirResponse, fmt: str, pretty: bool, head: bool = False) -> Response:
    headers = dict(resp.headers)
    if resp.raw is not None:
        out = Response(b"" if head else resp.raw, status=resp.status,
                       content_type=resp.raw_content_type or "application/octet-stream")
    elif resp.json_body is not None and fmt == formats.JSON and not pretty:
        out = Response(b"" if head else resp.json_body, status=resp.status, content_type=formats.media_type(fmt))
    elif resp.get_resource() is not None:
        assert resp.resource is not None
        body = formats.render(resp.resource, fmt, pretty)
        out = Response(b"" if head else body, status=resp.status, content_type=formats.media_type(fmt))
    else:
        out = Response(b"", status=resp.status)
    for k, v in headers.items():
        if k.lower() != "content-type":
            out.headers[k] = v
    return out


def make_blueprint(services: Any, url_prefix: str = "/fhir") -> Blueprint:
    bp = Blueprint("fhir", __name__)

    def handle(path: str) -> Response:
        fmt = formats.JSON
        pretty = request.args.get("_pretty") == "true"
        try:
            fmt = formats.negotiate(request.headers.get("Accept"), request.args.get("_format"))
            base = base_url_of(services.settings.base_url)
            if services.settings.auth and services.authenticator is not None:
                ctx = services.authenticator(request.headers)
                ctx = RequestContext(**{**ctx.__dict__, "base_url": base})
            else:
                ctx = RequestContext(base_url=base)
            try:
                body = request.get_data(cache=False) if request.method in ("POST", "PUT", "PATCH") else None
            except RequestEntityTooLarge as exc:
                limit = services.settings.max_body_bytes
                raise OperationOutcomeError(413, f"Request body is over the limit of {limit} bytes",
                                            code="too-costly") from exc
            query = [(k, v) for k, v in request.args.items(multi=True)]
            req = FhirRequest(request.method, path, query, dict(request.headers), body=body or None, context=ctx,
                              accepts_json_body=True)
            resp = services.router.handle(req)
            on_forbidden = getattr(services, "on_forbidden", None)
            if resp.status == 403 and ctx.scopes is not None and on_forbidden is not None:
                on_forbidden(ctx, req, resp)
        except OperationOutcomeError as err:
            resp = FhirResponse(err.status, err.outcome(), err.headers)
        return render_response(resp, fmt, pretty, head=request.method == "HEAD")

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    bp.add_url_rule(url_prefix, "base", lambda: handle(""), methods=methods, strict_slashes=False)
    bp.add_url_rule(f"{url_prefix}/<path:path>", "fhir", handle, methods=methods)

    @bp.app_errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        """Every HTTP-level error of the app (a body over the limit, an unknown path, a method a route does not
        take), FHIR or not, answers an OperationOutcome like the rest of the API, not Flask's HTML page."""
        code = exc.code or 500
        if isinstance(exc, RequestEntityTooLarge):
            code = 413
        issue_code = {404: "not-found", 405: "not-supported"}.get(code, "processing")
        detail = exc.description or exc.name
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            detail = f"{request.method} is not allowed on {request.path}; it takes {', '.join(exc.valid_methods)}"
        elif code == 404 and not request.path.startswith(url_prefix):
            detail = f"Nothing at {request.path}; the FHIR API is under {url_prefix}/"
        oo = operation_outcome([Issue("error", issue_code, detail)])
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        return render_response(FhirResponse(code, oo, headers), formats.JSON, False)

    return bp


def init_fhir(app: Flask, services: Any) -> None:
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_body_bytes
    app.register_blueprint(make_blueprint(services))
