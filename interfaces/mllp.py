"""The MLLP listener: asyncio sockets, a single database writer, ACK after commit.

asyncio handles many idle sender connections cheaply and never blocks on a
slow peer; the database work runs in another thread so a commit never stalls
the event loop (figures in bench/RESULTS.md).  Per connection, frames are
handled strictly in order, as MLLP senders expect.

Group commit: each frame is submitted to the pipeline's writer thread
(``submit_handler``); frames that arrive (on any connection) while the writer is
busy are applied together at its next turn, so they share one database commit;
a lone message on a quiet feed is processed at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from interfaces.ack import AckError, batch_ack, build_ack
from interfaces.client import batch_messages, is_batch
from interfaces.framing import FrameDecoder, frame
from interfaces.outcome import IngestResult
from interfaces.pipeline import Hl7Pipeline

log = logging.getLogger(__name__)

DEFAULT_PORT = 2575
OnCommit = Callable[[bytes], None]
Handler = Callable[[bytes, str, OnCommit | None], IngestResult]
SubmitHandler = Callable[[list[tuple[bytes, str, OnCommit | None]]], list[Future[IngestResult]]]


@dataclass
class ListenerStats:
    connections: int = 0
    open_connections: int = 0
    messages: int = 0
    discarded_bytes: int = 0
    oversized: int = 0
    idle_timeouts: int = 0
    dropped_partial: int = 0
    by_ack: dict[str, int] = field(default_factory=dict)


class MllpServer:
    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        max_message_bytes: int = 16 * 1024 * 1024,
        idle_timeout: float = 300.0,
        ssl_context: ssl.SSLContext | None = None,
        workers: int = 1,
        submit_handler: SubmitHandler | None = None,
    ) -> None:
        self.handler = handler  # one message at a time, in the executor
        self.submit_handler = submit_handler  # or: queue it with the pipeline's writer thread (group commit)
        self._submitted: set[asyncio.Future[IngestResult]] = set()  # messages queued and not yet answered
        self._connections: set[asyncio.Task[Any]] = set()
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.ssl_context = ssl_context
        self.stats = ListenerStats()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hl7-worker")
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self.ssl_context, limit=1 << 20
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        """Stop accepting, let the queued messages finish (their ACKs go out), then close open connections."""
        if self._server is not None:
            self._server.close()
        if self._submitted:
            await asyncio.gather(*self._submitted, return_exceptions=True)
            await asyncio.sleep(0)  # the connections write those ACKs
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._executor.shutdown(wait=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = f"mllp:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "mllp"
        decoder = FrameDecoder(max_size=self.max_message_bytes)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        self.stats.connections += 1
        self.stats.open_connections += 1

        def send_soon(ack: bytes) -> None:
            loop.call_soon_threadsafe(writer.write, frame(ack))

        try:
            while True:
                try:  # asyncio.timeout, not wait_for: that wrapped every read in a task of its own
                    async with asyncio.timeout(self.idle_timeout):
                        data = await reader.read(65536)
                except TimeoutError:
                    self.stats.idle_timeouts += 1
                    break
                if not data:
                    if decoder.partial:
                        self.stats.dropped_partial += 1  # nothing was stored for it, nothing acked
                    break
                oversized_before = decoder.oversized_frames
                discarded_before = decoder.discarded_bytes
                payloads = decoder.feed(data)
                self.stats.discarded_bytes += decoder.discarded_bytes - discarded_before
                for _ in range(decoder.oversized_frames - oversized_before):
                    self.stats.oversized += 1
                    ack = build_ack(
                        None,
                        "AR",
                        errors=[
                            AckError(
                                ("207", "Application internal error"),
                                f"message exceeds the maximum size of {self.max_message_bytes} bytes",
                            )
                        ],
                    )
                    writer.write(frame(ack))
                submitted = [self._submit_frame(payload, source, send_soon) for payload in payloads]
                for batch, futures in submitted:
                    results = [await f for f in futures]
                    for result in results:
                        self.stats.messages += 1
                        self.stats.by_ack[result.ack_code] = self.stats.by_ack.get(result.ack_code, 0) + 1
                    for ack in [batch_ack([r.acks for r in results])] if batch else results[0].acks:
                        writer.write(frame(ack))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("MLLP connection %s closed: %s", source, exc)
        finally:
            self.stats.open_connections -= 1
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass


    def _submit_frame(self, payload: bytes, source: str, on_commit: OnCommit
                      ) -> tuple[bool, list[asyncio.Future[IngestResult]]]:
        """Whether the frame is an FHS/BHS batch, and its messages underway: a batch's are answered together,
        by one batch of ACKs once all are done (no commit ACK of their own ahead of it)."""
        if is_batch(payload):
            return True, [self._submit(m, source, None) for m in batch_messages(payload)]
        return False, [self._submit(payload, source, on_commit)]

    def _submit(self, payload: bytes, source: str, on_commit: OnCommit | None) -> asyncio.Future[IngestResult]:
        if self.submit_handler is None:
            return asyncio.get_running_loop().run_in_executor(self._executor, self.handler, payload, source,
                                                              on_commit)
        fut = asyncio.wrap_future(self.submit_handler([(payload, source, on_commit)])[0])
        self._submitted.add(fut)
        fut.add_done_callback(self._submitted.discard)
        return fut


class ListenerHandle:
    """A listener running on its own event-loop thread; ``stop()`` closes it."""

    def __init__(self, server: MllpServer) -> None:
        self.server = server
        self.pipeline: Hl7Pipeline | None = None  # the pipeline it feeds, when started with one
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped = asyncio.Event()
        self.thread = threading.Thread(target=self._run, name=f"mllp-{server.port}", daemon=True)
        self.thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def host(self) -> str:
        return self.server.host

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:  # bind errors surface in the caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_until_complete(self._stopped.wait())
        self._loop.run_until_complete(self.server.close())
        self._loop.close()

    def stop(self) -> None:
        if self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self.thread.join(30)

    def wait(self) -> None:
        """Block until stopped (the ``digitalfront mllp`` foreground command)."""
        while self.thread.is_alive():
            self.thread.join(1)


def tls_context(certfile: str, keyfile: str | None = None, cafile: str | None = None) -> ssl.SSLContext:
    """Server TLS; with ``cafile`` the peer must present a certificate (mutual TLS, common for MLLP/S)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def start_pipeline_listener(
    pipeline: Hl7Pipeline, host: str = "127.0.0.1", port: int = DEFAULT_PORT, **opts: Any
) -> ListenerHandle:
    """A listener feeding ``pipeline`` with group commit (``group_commit=False`` for one message at a time)."""
    group = opts.pop("group_commit", True)
    if group and pipeline.prepare_pool is not None:  # workers up before the first burst
        threading.Thread(target=pipeline.prepare_pool.start, name="hl7-prepare-start", daemon=True).start()
    handle = ListenerHandle(MllpServer(pipeline.ingest, host=host, port=port,
                                       submit_handler=pipeline.submit if group else None, **opts))
    handle.pipeline = pipeline
    return handle


def start_listener_thread(
    services: Any, host: str = "127.0.0.1", port: int = DEFAULT_PORT, **opts: Any
) -> ListenerHandle:
    """Entry point for ``digitalfront serve --mllp-port``: a listener writing through ``services.router``."""
    from interfaces.service import pipeline_for

    return start_pipeline_listener(pipeline_for(services), host, port, **opts)
