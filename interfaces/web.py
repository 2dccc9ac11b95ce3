"""HTTP side of the HL7v2 interface: ``POST /hl7v2`` and the message-store admin endpoints.

Admin endpoints answer JSON; errors are OperationOutcomes with a 4xx, as
everywhere else in the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from fhir_server.errors import OperationOutcomeError, bad_request, not_found
from interfaces.ack import batch_ack
from interfaces.client import batch_messages, is_batch
from interfaces.monitor import CONTENT_TYPE, pipeline_metrics
from interfaces.pipeline import Hl7Pipeline
from interfaces.service import pipeline_for
from interfaces.store import STATUSES

HL7_TYPES = ("text/plain", "x-application/hl7-v2+er7", "application/hl7-v2", "application/edi-hl7")
ACK_TYPE = "x-application/hl7-v2+er7"
HTTP_STATUS = {"AA": 200, "CA": 200, "AE": 422, "CE": 422, "AR": 400, "CR": 400}


def _date(name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw)  # without an offset: UTC (the store's UtcDateTime)
    except ValueError:
        raise bad_request(f"{name} must be an ISO 8601 date or date-time, got {raw!r}") from None


def _int(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise bad_request(f"{name} must be a non-negative integer")
    return min(int(raw), maximum)


def _contains() -> bytes | None:
    """``contains``: text to find in the raw messages, as UTF-8 bytes (what most feeds send)."""
    raw = request.args.get("contains")
    if not raw:
        return None
    if len(raw) > 200:
        raise bad_request("contains is limited to 200 characters")
    return raw.encode()


def create_blueprint(services: Any, pipeline: Hl7Pipeline) -> Blueprint:
    bp = Blueprint("hl7v2", __name__)

    def authorize() -> None:
        auth = getattr(services, "authenticator", None)
        if auth is not None:
            auth(dict(request.headers))

    @bp.errorhandler(OperationOutcomeError)
    def _oo(exc: OperationOutcomeError) -> tuple[Response, int]:
        resp = jsonify(exc.outcome())
        resp.mimetype = "application/fhir+json"
        return resp, exc.status

    @bp.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        """A body over the limit and the like: an OperationOutcome too (the app answers other errors)."""
        return _oo(OperationOutcomeError(exc.code or 500, exc.description or exc.name))

    @bp.post("/hl7v2")
    def ingest() -> Response:
        authorize()
        ctype = (request.mimetype or "").lower()
        if ctype not in HL7_TYPES:
            raise OperationOutcomeError(415, f"Content-Type must be one of {', '.join(HL7_TYPES)}", "not-supported")
        body = request.get_data(cache=False)
        if not body.strip():
            raise bad_request("empty HL7v2 message")
        source = f"http:{request.remote_addr or ''}"
        if is_batch(body):
            return _ingest_batch(body, source)
        result = pipeline.ingest(body, source)
        ack = b"".join(result.acks) or b""
        resp = Response(ack, status=HTTP_STATUS.get(result.ack_code, 200), mimetype=ACK_TYPE)
        resp.headers["X-HL7-Message-Id"] = str(result.message_id)
        resp.headers["X-HL7-Ack-Code"] = result.ack_code
        return resp

    def _ingest_batch(body: bytes, source: str) -> Response:
        """An FHS/BHS batch: each message ingested as if sent alone (in order, one group commit), answered
        with a batch of their ACKs. 200 whatever the messages' codes: each was committed or kept on its
        own, so one refusal does not make the request fail (the codes are in the ACKs and a header)."""
        messages = batch_messages(body)
        if not messages:
            raise bad_request("the batch holds no message (no MSH segment)")
        results = pipeline.ingest_batch([(m, source, None) for m in messages])
        resp = Response(batch_ack([r.acks for r in results]), mimetype=ACK_TYPE)
        resp.headers["X-HL7-Message-Id"] = ",".join(str(r.message_id) for r in results)
        resp.headers["X-HL7-Ack-Code"] = ",".join(r.ack_code for r in results)
        return resp

    @bp.get("/hl7v2/messages")
    def list_messages() -> Response:
        authorize()
        base = request.url_root.rstrip("/") + "/fhir"
        status = request.args.get("status") or None
        if status is not None and status not in STATUSES:  # a typo would read as "no such messages"
            raise bad_request(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        found = pipeline.store.search(
            status=status,
            message_type=request.args.get("type") or None,
            sender=request.args.get("sender") or None,
            since=_date("since"),
            until=_date("until"),
            control_id=request.args.get("controlId") or None,
            patient=request.args.get("patient") or None,
            contains=_contains(),
            limit=_int("_count", 100, 1000),
            offset=_int("_offset", 0, 10**9),
        )
        return jsonify({"messages": [m.summary(base) for m in found], "count": len(found)})

    @bp.get("/hl7v2/messages/<int:msg_id>")
    def get_message(msg_id: int) -> Response:
        authorize()
        stored = pipeline.store.get(msg_id)
        if stored is None:
            raise not_found(f"HL7v2 message {msg_id} not found")
        out = stored.summary(request.url_root.rstrip("/") + "/fhir")
        out["raw"] = stored.raw.decode("utf-8", "replace")
        out["ack"] = stored.ack.decode("utf-8", "replace") if stored.ack else None
        return jsonify(out)

    @bp.post("/hl7v2/messages/<int:msg_id>/replay")
    def replay(msg_id: int) -> Response:
        authorize()
        if pipeline.store.get(msg_id) is None:
            raise not_found(f"HL7v2 message {msg_id} not found")
        result = pipeline.replay(msg_id)
        return jsonify(
            {"id": msg_id, "status": result.status, "ackCode": result.ack_code, "resources": result.resources}
        )

    @bp.get("/hl7v2/stats")
    def stats() -> Response:
        authorize()
        return jsonify({"messagesByStatus": pipeline.store.counts()})

    @bp.get("/hl7v2/metrics")
    def metrics() -> Response:
        """Prometheus text format, for scraping or for the app's /metrics to include."""
        return Response(pipeline_metrics(pipeline), mimetype=CONTENT_TYPE)

    return bp


def init_app(app: Flask, services: Any) -> None:
    pipeline = pipeline_for(services)
    app.register_blueprint(create_blueprint(services, pipeline))
    app.extensions["hl7v2_pipeline"] = pipeline
