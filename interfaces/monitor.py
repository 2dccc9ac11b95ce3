"""Prometheus metrics and health checks, as text, and the MLLP process's own HTTP port for them.

A pipeline's counters (group commits, applied, prepared) and a listener's (connections, frames, ACK codes,
dropped bytes) live in the process that runs them. The API processes' ``/metrics`` count the messages posted
to them over HTTP; ``digitalfront mllp --metrics-port P`` serves the MLLP process's own, with ``/healthz``
(liveness: the listener's event loop runs) and ``/readyz`` (readiness: it runs and the database answers) for
Kubernetes probes. The message counts per status come from the store, so every process reports the same.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interfaces.mllp import ListenerHandle, ListenerStats
    from interfaces.pipeline import Hl7Pipeline

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4"


def _metric(name: str, kind: str, help_text: str, samples: list[tuple[str, int]]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *(f"{name}{labels} {v}" for labels, v in samples)]


def pipeline_metrics(pipeline: Hl7Pipeline) -> str:
    """The store's messages per status and this process's pipeline counters."""
    stats = pipeline.stats
    lines = _metric("digitalfront_hl7v2_messages", "gauge", "HL7v2 messages in the store by status",
                    [(f'{{status="{s}"}}', n) for s, n in pipeline.store.counts().items()])
    for name, help_text, value in (
        ("group_commits_total", "Transactions that applied HL7v2 messages (group commit)", stats.group_commits),
        ("applied_total", "HL7v2 messages applied by those transactions", stats.applied),
        ("prepared_total", "HL7v2 messages mapped, validated and indexed by a worker process", stats.prepared),
        ("stored_with_group_total", "HL7v2 messages stored by the commit of a group being applied",
         stats.stored_with_group),
    ):
        lines += _metric(f"digitalfront_hl7v2_{name}", "counter", help_text, [("", value)])
    return "\n".join(lines) + "\n"


def listener_metrics(stats: ListenerStats) -> str:
    """An MLLP listener's connection and framing counters, and its ACKs by code."""
    lines: list[str] = []
    for name, kind, help_text, value in (
        ("connections_total", "counter", "MLLP connections accepted", stats.connections),
        ("open_connections", "gauge", "MLLP connections open now", stats.open_connections),
        ("discarded_bytes_total", "counter", "Bytes received outside MLLP frames (dropped)", stats.discarded_bytes),
        ("oversized_total", "counter", "Frames over the maximum message size (answered AR)", stats.oversized),
        ("idle_timeouts_total", "counter", "Connections closed after the idle timeout", stats.idle_timeouts),
        ("dropped_partial_total", "counter", "Frames cut off by a closed connection (nothing stored)",
         stats.dropped_partial),
    ):
        lines += _metric(f"digitalfront_mllp_{name}", kind, help_text, [("", value)])
    lines += _metric("digitalfront_mllp_messages_total", "counter", "Messages answered over MLLP by ACK code",
                     [(f'{{ack="{code}"}}', n) for code, n in sorted(stats.by_ack.items())])
    return "\n".join(lines) + "\n"


class MonitorServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of one MLLP listener, on a thread of their own."""

    def __init__(self, handle: ListenerHandle, host: str = "127.0.0.1", port: int = 0) -> None:
        if handle.pipeline is None:
            raise ValueError("the listener feeds no pipeline (start it with start_pipeline_listener)")
        self.handle, self.pipeline = handle, handle.pipeline
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                status, body, ctype = monitor.respond(self.path.split("?", 1)[0])
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
                log.debug(format, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="mllp-monitor", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def respond(self, path: str) -> tuple[int, str, str]:
        if path == "/metrics":
            return 200, listener_metrics(self.handle.server.stats) + pipeline_metrics(self.pipeline), CONTENT_TYPE
        if path == "/healthz":
            alive = self.handle.thread.is_alive()
            return (200, "ok\n", "text/plain") if alive else (503, "the MLLP listener has stopped\n", "text/plain")
        if path == "/readyz":
            if not self.handle.thread.is_alive():
                return 503, "the MLLP listener has stopped\n", "text/plain"
            try:
                self.pipeline.store.counts()
            except Exception as exc:  # noqa: BLE001 - any database failure means "not ready", said why
                return 503, f"the message store does not answer: {exc.__class__.__name__}\n", "text/plain"
            return 200, "ready\n", "text/plain"
        return 404, "not found: /metrics, /healthz or /readyz\n", "text/plain"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
