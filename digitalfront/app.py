"""The app factory: the one place that wires every package together (DESIGN.md)."""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from digitalfront.config import Settings
from digitalfront.plugins import WEB_PLUGINS
from fhir_server.client import LocalFhirClient
from fhir_server.errors import Issue, operation_outcome
from fhir_server.events import EventBus, ResourceChanged
from fhir_server.flask_adapter import init_fhir
from fhir_server.router import FhirRouter, RouterSettings
from fhir_server.search.registry import SearchParamRegistry
from fhir_server.storage.engine import make_engine, optimize
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import SqlFhirRepository

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: Any
    repo: SqlFhirRepository
    router: FhirRouter
    events: EventBus
    client: LocalFhirClient
    authenticator: Any = None
    # called with (context, request, response) when a token's scopes refuse a FHIR request (403): SMART audits it
    on_forbidden: Any = None
    terminology: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


def build_services(settings: Settings | None = None, *, migrate: bool = True) -> Services:
    settings = settings or Settings()
    engine = make_engine(settings.database_url, synchronous=settings.sqlite_synchronous,
                         wait_s=settings.db_wait_s)
    if migrate:
        upgrade(engine)
        optimize(engine)
    events = EventBus()
    registry = SearchParamRegistry()
    repo = SqlFhirRepository(engine, registry=registry, events=events, base_url=settings.base_url or None)
    router = FhirRouter(repo, registry, RouterSettings(validate_writes=settings.validate_writes,
                                                       allow_multiple_delete=settings.allow_multiple_delete))
    services = Services(settings, engine, repo, router, events, LocalFhirClient(router))
    _load_custom_search_parameters(services)
    events.subscribe(lambda ev: _on_search_parameter(services, ev), "SearchParameter")
    return services


def _on_search_parameter(services: Services, ev: ResourceChanged) -> None:
    if ev.resource is not None:
        services.router.on_search_parameter_written(ev.resource)


def _load_custom_search_parameters(services: Services) -> None:
    for stored in services.repo.iter_current(["SearchParameter"]):
        if stored.resource:
            services.router.on_search_parameter_written(stored.resource)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    services = services or build_services(settings)
    app = Flask("digitalfront")
    app.extensions["digitalfront"] = services
    if not services.settings.auth:
        log.warning("AUTHORIZATION IS OFF (DIGITALFRONT_AUTH=off): every caller has full access. "
                    "Development use only.")
    for module_name, attr in WEB_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # feature package not present
            raise
        getattr(module, attr)(app, services)
    services.router.terminology = services.terminology
    init_fhir(app, services)

    constant = os.environ.get("DIGITALFRONT_BENCH_CONSTANT_BYTES")
    if constant:  # benchmark baseline only: a minimal route with a constant body in the same server
        body = b"x" * int(constant)

        @app.get("/bench/constant")
        def bench_constant() -> Any:
            return app.response_class(body, content_type="application/fhir+json")

    @app.before_request
    def _no_nul_in_query() -> Any:
        """A NUL in a query string is never data: no index holds one and PostgreSQL refuses it in SQL (a 500
        wherever a parameter reached a query: ``_id``, ``/hl7v2/messages?type=``...). One 400 for every route."""
        if any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
            oo = operation_outcome([Issue("error", "invalid", "The query string contains a NUL character")])
            return app.response_class(orjson.dumps(oo), status=400, mimetype="application/fhir+json")
        return None

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        """A bug in a feature's route answers JSON like the rest of the API, not Flask's HTML page."""
        if isinstance(exc, HTTPException):
            return exc
        known = services.repo.failure_outcome(exc)
        if known is not None:  # a lost race, the database busy or unreachable: the client may retry
            log.warning("%s %s: %s", request.method, request.path, exc)
            return app.response_class(orjson.dumps(known.outcome()), status=known.status, headers=known.headers,
                                      mimetype="application/fhir+json")
        log.exception("unhandled error for %s %s", request.method, request.path)
        oo = operation_outcome([Issue("fatal", "exception", "Internal server error; it has been logged")])
        return app.response_class(orjson.dumps(oo), status=500, mimetype="application/fhir+json")

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.get("/metrics")
    def metrics() -> Any:
        """Prometheus text: stored resources per type plus each feature package's own metrics."""
        lines = ["# HELP digitalfront_resources Current (non-deleted) resources by type",
                 "# TYPE digitalfront_resources gauge"]
        for rtype, n in sorted(services.repo.count_by_type().items()):
            lines.append(f'digitalfront_resources{{type="{rtype}"}} {n}')
        text = "\n".join(lines) + "\n"
        for provider in metrics_providers(app):
            text += provider()
        return app.response_class(text, mimetype="text/plain; version=0.0.4")

    return app


def metrics_providers(app: Flask) -> list[Any]:
    out: list[Any] = []
    pipeline = app.extensions.get("hl7v2_pipeline")
    if pipeline is not None:
        from interfaces.monitor import pipeline_metrics

        out.append(lambda: pipeline_metrics(pipeline))
    if "inference" in app.extensions:
        from inference import metrics as inference_metrics

        out.append(inference_metrics.prometheus_text)
    return out


