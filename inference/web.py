"""Wiring into the app: ``GET /inference/models``, ``ImagingStudy/$analyze``, DICOMweb STOW-RS."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from fhir_server.errors import OperationOutcomeError, operation_outcome
from fhir_server.flask_adapter import base_url_of
from fhir_server.model import RequestContext
from inference import get_model_client, metrics
from inference.client import ModelClient
from inference.imaging.analyze import ImagingAnalyzer
from inference.imaging.dicom import DicomError, read_dicom
from inference.imaging.operation import make_handler
from inference.imaging.stow import FAILURE_CANNOT_UNDERSTAND, FAILURE_PROCESSING, split_multipart, stow_response
from inference.registry import ModelRegistry, registry, repository_root

log = logging.getLogger(__name__)


def _json(body: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(json.dumps(body), status=status, mimetype=mimetype)


def _outcome(exc: OperationOutcomeError) -> Response:
    resp = _json(exc.outcome(), exc.status, "application/fhir+json")
    for k, v in exc.headers.items():
        resp.headers[k] = v
    return resp


def _base(services: Any) -> str:
    """The server root (no ``/fhir``), for DICOMweb RetrieveURLs."""
    return base_url_of(getattr(services.settings, "base_url", "")).removesuffix("/fhir")


def _context(services: Any) -> RequestContext:
    """The caller's context exactly as the FHIR adapter builds it, so the same scopes apply."""
    base = base_url_of(getattr(services.settings, "base_url", ""))
    authenticate = getattr(services, "authenticator", None)
    if getattr(services.settings, "auth", False) and authenticate is not None:
        ctx = authenticate(request.headers)
        return RequestContext(**{**ctx.__dict__, "base_url": base})
    return RequestContext(base_url=base)


def models_blueprint(reg: ModelRegistry, client: ModelClient) -> Blueprint:
    bp = Blueprint("inference_models", __name__)

    @bp.get("/inference/models")
    def list_models() -> Response:
        models = reg.list()
        return _json({"backend": client.backend, "repository": str(reg.root), "models": models,
                      "errors": reg.errors})

    @bp.get("/inference/models/<name>")
    def one_model(name: str) -> Response:
        try:
            info = reg.get(name)
        except LookupError as exc:
            return _json(operation_outcome([_issue(str(exc), "not-found")]), 404, "application/fhir+json")
        return _json({**info.to_json(), "ready": client.ready(name)})

    @bp.get("/inference/metrics")
    def prom() -> Response:
        return Response(metrics.prometheus_text(), mimetype="text/plain; version=0.0.4")

    return bp


def _issue(text: str, code: str) -> Any:
    from fhir_server.errors import Issue

    return Issue("error", code, text)


def dicomweb_blueprint(services: Any, analyzer: ImagingAnalyzer) -> Blueprint:
    bp = Blueprint("dicomweb", __name__)

    def stow(study_uid: str | None = None) -> Response:
        try:
            ctx = _context(services)
            try:
                body = request.get_data()
            except RequestEntityTooLarge as exc:
                raise OperationOutcomeError(413, "STOW-RS body is over the server's size limit",
                                            code="too-costly") from exc
            parts = split_multipart(request.headers.get("Content-Type", ""), body)
            good: list[bytes] = []
            failed: list[tuple[str, str, int]] = []
            for part in parts:
                try:
                    inst = read_dicom(part)
                except DicomError:
                    failed.append(("", "", FAILURE_CANNOT_UNDERSTAND))
                    continue
                if study_uid and inst.study_uid != study_uid:
                    failed.append((inst.sop_class_uid, inst.sop_uid, 0xA900))  # study UID mismatch
                    continue
                good.append(part)
            stored: list[tuple[str, str, str]] = []
            if good:
                run_model = request.args.get("analyze", "true").lower() not in ("false", "0", "no")
                try:
                    analyzer.analyze(services.router, good, context=ctx, run_model=run_model,
                                     subject=request.args.get("subject"))
                    for blob in good:
                        inst = read_dicom(blob)
                        stored.append((inst.study_uid, inst.sop_class_uid, inst.sop_uid))
                except OperationOutcomeError as exc:
                    if exc.status in (401, 403):
                        raise
                    log.warning("STOW-RS processing failed: %s", exc)
                    for blob in good:
                        inst = read_dicom(blob)
                        failed.append((inst.sop_class_uid, inst.sop_uid, FAILURE_PROCESSING))
            status = 200 if not failed else (202 if stored else 409)
            return _json(stow_response(_base(services), stored, failed), status, "application/dicom+json")
        except OperationOutcomeError as exc:
            return _outcome(exc)

    bp.add_url_rule("/dicomweb/studies", "stow", stow, methods=["POST"])
    bp.add_url_rule("/dicomweb/studies/<study_uid>", "stow_study", stow, methods=["POST"])
    return bp


def init_app(app: Flask, services: Any) -> None:
    settings = getattr(services, "settings", None)
    client = get_model_client(settings)
    reg = registry(repository_root(settings))
    analyzer = ImagingAnalyzer(client, reg)
    try:
        services.model_client = client  # for cds_hooks/nlp: one client per process
    except AttributeError:
        pass
    app.extensions["inference"] = {"client": client, "registry": reg, "analyzer": analyzer}
    app.register_blueprint(models_blueprint(reg, client))
    router = getattr(services, "router", None)
    if router is not None and hasattr(router, "register_operation"):
        router.register_operation("analyze", make_handler(analyzer), level="type", resource_types=["ImagingStudy"],
                                  methods=("POST",), affects_state=True)
        app.register_blueprint(dicomweb_blueprint(services, analyzer))
    else:
        log.warning("no FHIR router: ImagingStudy/$analyze and DICOMweb are not available")
