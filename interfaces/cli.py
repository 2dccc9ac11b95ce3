"""CLI: ``digitalfront hl7 send|load|replay`` and ``digitalfront mllp`` (picked up via plugins.py)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from interfaces.client import MllpClient, ack_code, iter_files, read_messages
from interfaces.mllp import DEFAULT_PORT
from interfaces.store import MAX_ID, STATUSES


def _services() -> Any:
    """The app's services object (engine, router) built by the lead's app factory."""
    import importlib

    app_module = importlib.import_module("digitalfront.app")
    build = getattr(app_module, "build_services", None)
    if build is not None:
        return build()
    flask_app = app_module.create_app()
    for key in ("digitalfront", "services"):
        if key in flask_app.extensions:
            return flask_app.extensions[key]
    raise click.ClickException("the app factory does not expose its services (app.extensions['services'])")


def _pipeline() -> Any:
    from interfaces.service import pipeline_for

    return pipeline_for(_services())


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)  # without an offset: UTC (the store's UtcDateTime)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 date/time: {value}") from None


@click.group()
def hl7() -> None:
    """HL7v2: send files over MLLP, load a directory, replay stored messages."""


@hl7.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--timeout", default=30.0, show_default=True, type=float)
def send(files: tuple[str, ...], host: str, port: int, timeout: float) -> None:
    """Send FILES (single messages or FHS/BHS batch files; directories are walked) over MLLP."""
    counts: dict[str, int] = {}
    try:
        with MllpClient(host, port, timeout=timeout) as client:
            for path, message in _messages_of(list(files), counts):
                expect = 2 if _enhanced_with_app_ack(message) else 1
                acks = client.send(message, expect=expect)
                code = ack_code(acks[-1])
                counts[code] = counts.get(code, 0) + 1
                if code not in ("AA", "CA"):
                    click.echo(f"{path}: {code} {acks[-1].decode('utf-8', 'replace')!r}", err=True)
    except OSError as exc:  # refused, reset, timed out: where, and what had been acknowledged before it
        done = " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing"
        raise click.ClickException(f"MLLP {host}:{port}: {exc.strerror or exc} (answered before: {done})") from None
    click.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no messages found")
    if any(k not in ("AA", "CA") for k in counts):
        sys.exit(1)


NO_MESSAGE = "no-message"  # the count of files that hold no HL7v2 message


def _messages_of(paths: list[str], counts: dict[str, int]) -> Iterator[tuple[Path, bytes]]:
    """Each file's messages in order; a file without one is reported (and counted), not skipped silently."""
    for path in iter_files(paths):
        try:
            found = read_messages(path)
        except OSError as exc:  # unreadable: not to be reported as the connection's failure
            raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
        if not found:
            counts[NO_MESSAGE] = counts.get(NO_MESSAGE, 0) + 1
            click.echo(f"{path}: no HL7v2 message in it (no MSH segment)", err=True)
        for message in found:
            yield path, message


def _enhanced_with_app_ack(message: bytes) -> bool:
    from interfaces.ack import wants_ack
    from interfaces.parsing import parse

    try:
        _, h = parse(message)
    except ValueError:
        return False
    return h.enhanced_mode and wants_ack(h.accept_ack_type, True) and h.application_ack_type in ("AL", "")


@hl7.command()
@click.argument("directory", type=click.Path(exists=True))
def load(directory: str) -> None:
    """Ingest every message under DIRECTORY in-process (same store, dedup and ACK rules as MLLP).

    Messages are applied in file order with group commit (64 per database transaction)."""
    pipeline = _pipeline()
    counts: dict[str, int] = {}
    group: list[tuple[bytes, str, None]] = []

    def flush() -> None:
        for result in pipeline.ingest_batch(group):
            counts[result.status] = counts.get(result.status, 0) + 1
        group.clear()

    for path, message in _messages_of([directory], counts):
        group.append((message, f"file:{path}", None))
        if len(group) >= 64:
            flush()
    flush()
    click.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no messages found")
    if NO_MESSAGE in counts:
        sys.exit(1)


@hl7.command()
@click.option("--id", "ids", multiple=True, type=click.IntRange(1, MAX_ID), help="store id (repeatable)")
# a duplicate is never re-applied: every other status of the store
@click.option("--status", type=click.Choice([s for s in STATUSES if s != "duplicate"]))
@click.option("--since", help="received at or after (ISO 8601)")
@click.option("--until", help="received before (ISO 8601)")
def replay(ids: tuple[int, ...], status: str | None, since: str | None, until: str | None) -> None:
    """Reprocess stored messages in arrival order (after a mapping fix)."""
    if not ids and not status and not since and not until:
        raise click.UsageError("give --id, --status, --since or --until")
    pipeline = _pipeline()
    counts: dict[str, int] = {}
    for msg_id in pipeline.store.iter_ids(status=status, since=_when(since), until=_when(until), ids=list(ids) or None):
        result = pipeline.replay(msg_id)
        counts[result.ack_code] = counts.get(result.ack_code, 0) + 1
    click.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing to replay")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="bind address")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--max-message-bytes", default=16 * 1024 * 1024, show_default=True, type=int)
@click.option("--idle-timeout", default=300.0, show_default=True, type=float, help="seconds")
@click.option("--tls-cert", type=click.Path(exists=True), help="PEM certificate (enables MLLP over TLS)")
@click.option("--tls-key", type=click.Path(exists=True))
@click.option("--tls-ca", type=click.Path(exists=True), help="require client certificates from this CA")
@click.option("--metrics-port", type=int, envvar="DIGITALFRONT_MLLP_METRICS_PORT", show_envvar=True,
              help="also serve /metrics, /healthz and /readyz over HTTP on this port (same bind address)")
def mllp(
    host: str,
    port: int,
    max_message_bytes: int,
    idle_timeout: float,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    metrics_port: int | None,
) -> None:
    """Run the MLLP listener in the foreground."""
    from interfaces.mllp import start_listener_thread, tls_context
    from interfaces.monitor import MonitorServer

    parent = os.environ.get("DIGITALFRONT_PARENT_PID")
    if parent:  # started by ``digitalfront serve --mllp-port``: leave with it, even after a kill -9
        from interfaces.prepare import exit_with_parent

        threading.Thread(target=exit_with_parent, args=(int(parent),), daemon=True).start()

    ctx = tls_context(tls_cert, tls_key, tls_ca) if tls_cert else None
    services = _services()
    try:
        handle = start_listener_thread(
            services, host, port, max_message_bytes=max_message_bytes, idle_timeout=idle_timeout, ssl_context=ctx
        )
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise click.ClickException(f"cannot listen for MLLP on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"MLLP listening on {handle.host}:{handle.port}", err=True)
    if metrics_port is not None:
        try:
            monitor = MonitorServer(handle, host, metrics_port)
        except OSError as exc:
            handle.stop()
            raise click.ClickException(f"cannot serve metrics on {host}:{metrics_port}: {exc.strerror or exc}"
                                       ) from None
        click.echo(f"MLLP metrics on http://{host}:{monitor.port}/metrics (/healthz, /readyz)", err=True)
    try:
        handle.wait()
    except KeyboardInterrupt:
        handle.stop()
