"""Worker processes that map, validate and index HL7v2 messages ahead of the one database writer.

The writer applies messages one at a time in arrival order (per-patient order, race-free dedup). What a
message needs before its writes (the v2-to-FHIR mapping, validation, search-index extraction; see
``fhir_server.interactions.prepared``) needs no database, so it runs here, in parallel with the writer and
with each other: the writer is left with id resolution and SQL. A worker that dies or a pool that cannot
start costs speed only: the pipeline then maps the message itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from fhir_server.interactions.prepared import PreparedBundle, PrepareMemo, prepare_bundle
from fhir_server.search.registry import SearchParamRegistry
from interfaces.er7 import Er7Message
from interfaces.mapping import MappingError, UnsupportedMessage, map_to_bundle
from interfaces.parsing import Header, parse

log = logging.getLogger(__name__)


@dataclass
class Mapped:
    """One message mapped (``bundle``) or why not (``unsupported`` / ``error``), plus the prepared work."""

    bundle: dict[str, Any] | None = None
    prepared: PreparedBundle | None = None
    unsupported: str | None = None
    error: str | None = None
    error_code: tuple[str, str] = ("101", "Required field missing")
    error_location: str = ""


def map_message(msg: Er7Message, header: Header, msg_id: int) -> Mapped:
    try:
        bundle = map_to_bundle(msg, header, store_id=msg_id)
    except UnsupportedMessage as exc:
        return Mapped(unsupported=str(exc))
    except MappingError as exc:
        return Mapped(error=str(exc), error_code=exc.code, error_location=exc.location)
    return Mapped(bundle)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers() -> int:
    """One worker per core but the writer's (at most 8); 0 (map in the writer's thread) on a single core.

    Measured on two cores: one worker 119 msg/s, two 107 (bench/RESULTS.md): a second worker competes with
    the writer thread for the cores, and the writer is what limits throughput.
    """
    cores = usable_cores()
    return min(cores - 1, 8) if cores > 1 else 0


# Workers run at a lower CPU priority than the server. The one writer thread is what limits throughput;
# with as many workers as cores, an equal share left it two thirds of a core. Niced, the workers take what
# the writer leaves, and when they fall behind the writer waits for them, idle, so they catch up
# (measured: in-process 8.4 -> 7.5 ms per message, MLLP +7%; bench/RESULTS.md).
WORKER_NICE = 10

# ---------------------------------------------------------------- inside a worker process
_worker: dict[str, Any] = {}


def _init_worker(registrations: list[dict[str, Any]], base_url: str | None, validate: bool) -> None:
    from fhir_server.search.extract import Extractor

    _worker["extractor"] = Extractor(SearchParamRegistry.replay_of(registrations), base_url)
    _worker["validate"] = validate
    _worker["memo"] = PrepareMemo()
    os.nice(WORKER_NICE)
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()


def exit_with_parent(parent: int) -> None:
    """A server killed with -9 cannot stop its children: they notice they were orphaned and leave."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _map_and_prepare(raw: bytes, msg_id: int) -> bytes:
    """The message mapped and prepared, pickled here: see ``loads_mapped``."""
    msg, header = parse(raw)  # the pipeline parsed it already (and ran any validating parser)
    mapped = map_message(msg, header, msg_id)
    if mapped.bundle is not None:
        mapped.prepared = prepare_bundle(mapped.bundle, _worker["extractor"], validate=_worker["validate"],
                                         memo=_worker["memo"])
    return pickle.dumps(mapped, protocol=pickle.HIGHEST_PROTOCOL)


def loads_mapped(data: bytes) -> Mapped:
    """A worker's result, unpickled by the writer thread when it takes the message.

    Returned as a plain object, it would be unpickled by the executor's result thread, holding the GIL for
    ~0.2 ms at moments the writer thread wants it back after a SQLite call: the writer's flushes took ~1 ms
    longer per message with a worker than without (bench/RESULTS.md). Unpickled by the writer, the same
    work costs the writer only itself. (Pickle from our own worker process: not untrusted input.)
    """
    mapped = pickle.loads(data)  # noqa: S301
    if not isinstance(mapped, Mapped):
        raise TypeError(f"a prepare worker returned {type(mapped).__name__}")
    return mapped


_READY, _OK, _FAILED = b"R", b"K", b"E"  # a worker's answers: started, a prepared message, a failure
START_TIMEOUT_S = 120.0
# A message a worker has not finished after this long is given up (its worker is killed): answered AE and kept
# in the store for replay, instead of holding back every message behind it in arrival order.
MAP_TIMEOUT_S = 60.0
RETRY_S = 30.0  # after workers died before they were ready, the writer maps everything itself this long


def _serve(requests: Connection, results: Connection, registrations: list[dict[str, Any]], base_url: str | None,
           validate: bool) -> None:
    """A worker process: map each request (8-byte store id + raw message), answer in the order received.

    A thread of its own reads the requests as they come, so the server's send never waits for the worker to
    finish a message, whatever their sizes (and the server never blocks on a pipe the worker cannot drain
    while it is itself blocked sending a result)."""
    _init_worker(registrations, base_url, validate)
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                inbox.put(requests.recv_bytes())
        except (EOFError, OSError):  # the server closed its end (pool closed or rebuilt) or went away
            inbox.put(None)

    threading.Thread(target=read, daemon=True).start()
    results.send_bytes(_READY)
    while (data := inbox.get()) is not None:
        try:
            out = _OK + _map_and_prepare(data[8:], int.from_bytes(data[:8], "big", signed=True))
        except Exception as exc:  # noqa: BLE001 - reported to the server, which maps that message itself
            out = _FAILED + f"{type(exc).__name__}: {exc}".encode()
        results.send_bytes(out)


# ---------------------------------------------------------------- in the server
def _exit_code(process: BaseProcess) -> int | None:
    """A dead worker's exit code (-9: killed), once the OS has it (its pipe closes first)."""
    process.join(1.0)
    return process.exitcode


class PrepareWorkerError(RuntimeError):
    """A worker could not prepare a message (or died with it): the pipeline maps that one itself."""


class MessageGivenUp(PrepareWorkerError):
    """A message the workers gave up: the pipeline answers it AE and keeps it for replay, and does not map it
    in its own thread, where it would do the same harm (hold back the feed, or take the server down)."""


class PrepareTimeout(MessageGivenUp):
    """A worker did not finish a message within ``MAP_TIMEOUT_S``."""


class WorkerDiedMapping(MessageGivenUp):
    """A worker died while it mapped this message. Mapped again in the server's own process, a message that
    kills its mapper (a crash in a native library, the memory it takes) would kill the server, and again each
    time the unacknowledged sender retransmits it."""


@dataclass
class _Worker:
    process: BaseProcess
    requests: Connection  # the server's sending end
    results: Connection  # the server's receiving end
    pending: deque[tuple[Future[bytes], float]] = field(default_factory=deque)  # sent (when), not answered
    ready: threading.Event = field(default_factory=threading.Event)
    answered_at: float = 0.0  # time.monotonic() of its last answer: the head of ``pending`` started after it


class _Generation:
    """Worker processes started with one version of the search parameters, and the thread reading their
    results. Replaced (when the parameters change or a worker dies), it finishes what it was sent and ends."""

    def __init__(self, workers: int, initargs: tuple[Any, ...]) -> None:
        ctx = multiprocessing.get_context("spawn")  # not fork: the server has threads and open connections
        self.lock = threading.Lock()
        self.broken = False
        self.workers: list[_Worker] = []
        for _ in range(workers):
            req_r, req_w = ctx.Pipe(duplex=False)
            res_r, res_w = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_serve, args=(req_r, res_w, *initargs), name="hl7-prepare", daemon=True)
            proc.start()
            req_r.close()
            res_w.close()
            self.workers.append(_Worker(proc, req_w, res_r))
        self.reader = threading.Thread(target=self._read, name="hl7-prepare-results", daemon=True)
        self.reader.start()

    def submit(self, payload: bytes) -> Future[bytes]:
        future: Future[bytes] = Future()
        with self.lock:
            if self.broken:
                raise PrepareWorkerError("a prepare worker died")
            w = min(self.workers, key=lambda w: len(w.pending))
            w.pending.append((future, time.monotonic()))  # under the lock with the send: answers come in order
            try:
                w.requests.send_bytes(payload)
            except OSError:
                w.pending.pop()
                self.broken = True
                raise
        return future

    def _read(self) -> None:
        """Resolve each worker's futures from its answers; a worker that goes away fails what it held."""
        by_conn = {w.results: w for w in self.workers}
        while by_conn:
            for conn in mp_connection.wait(list(by_conn), timeout=min(1.0, MAP_TIMEOUT_S / 4)):
                w = by_conn[conn]  # type: ignore[index]
                try:
                    data = w.results.recv_bytes()
                except (EOFError, OSError):
                    del by_conn[w.results]
                    self._lost(w, died=True)
                    continue
                if data == _READY:
                    w.answered_at = time.monotonic()  # what was sent while it started waits from now
                    w.ready.set()
                    continue
                with self.lock:
                    future, _sent = w.pending.popleft()
                    w.answered_at = time.monotonic()
                if data[:1] == _OK:
                    future.set_result(data[1:])
                else:
                    future.set_exception(PrepareWorkerError(data[1:].decode(errors="replace")))
            for w in list(by_conn.values()):
                if self._overdue(w):
                    del by_conn[w.results]

    def _overdue(self, w: _Worker) -> bool:
        """Give up a message its worker has spent ``MAP_TIMEOUT_S`` on: that one fails with PrepareTimeout,
        the worker is killed (its answers are no longer read) and what was queued behind it fails over to the
        writer."""
        with self.lock:  # the time it has been working on its oldest message, not that message's time in the queue
            if not w.pending or not w.ready.is_set() \
                    or time.monotonic() - max(w.pending[0][1], w.answered_at) <= MAP_TIMEOUT_S:
                return False  # (a worker still starting is not mapping yet)
            future, _sent = w.pending.popleft()
        log.error("HL7v2 prepare worker %s did not finish a message in %g s: killed; the message is answered AE "
                  "and kept for replay", w.process.pid, MAP_TIMEOUT_S)
        w.process.kill()
        future.set_exception(PrepareTimeout(f"mapping did not finish within {MAP_TIMEOUT_S:g} s"))
        self._lost(w)
        return True

    def _lost(self, w: _Worker, died: bool = False) -> None:
        """Fail what ``w`` held: the message it was mapping when it ``died`` is given up (WorkerDiedMapping),
        what was queued behind it fails over to the writer."""
        with self.lock:
            self.broken = True  # the next submit starts a new generation (this one may be closing anyway)
            lost, w.pending = [f for f, _sent in w.pending], deque()
        w.results.close()
        if died and lost and w.ready.is_set():  # (a worker that died starting was mapping nothing)
            code = _exit_code(w.process)
            log.error("HL7v2 prepare worker %s died while mapping a message: the message is answered AE and kept "
                      "for replay (exit code %s)", w.process.pid, code)
            lost.pop(0).set_exception(WorkerDiedMapping(
                f"the mapping worker died while mapping this message (exit code {code})"))
        for future in lost:
            future.set_exception(PrepareWorkerError(f"prepare worker {w.process.pid} went away"))

    def close(self, wait: bool) -> None:
        """Close the request pipes: each worker answers what it was sent, then leaves."""
        for w in self.workers:
            w.requests.close()
        if wait:
            for w in self.workers:
                w.process.join(30)
                if w.process.exitcode is None:
                    w.process.kill()
            self.reader.join(30)


class PreparePool:
    """Worker processes replaying the server's search parameters; rebuilt when they change or one dies.

    Not a ``ProcessPoolExecutor``: its manager and feeder threads woke three times per message, and each
    wake-up wanted the GIL the writer thread (the pipeline's bottleneck) was waiting to take back after a
    SQLite call. Here the submitting thread writes the request to a worker's pipe itself, and one thread
    reads the answers (bench/RESULTS.md)."""

    def __init__(self, workers: int, registry: SearchParamRegistry, *, base_url: str | None = None,
                 validate: bool = True) -> None:
        self.workers = workers
        self.registry = registry
        self.base_url = base_url
        self.validate = validate
        self._lock = threading.Lock()
        self._generation: _Generation | None = None
        self._version = -1
        self._retry_at = 0.0  # time.monotonic() before which no new workers are started

    def _current(self) -> _Generation:
        with self._lock:
            gen = self._generation
            if gen is None or gen.broken or self._version != self.registry.version:
                if gen is not None:
                    gen.close(wait=False)
                    if gen.broken and not any(w.ready.is_set() for w in gen.workers):
                        log.error("HL7v2 prepare workers died before they were ready; the writer maps messages "
                                  "itself for %.0f s, then they are started again", RETRY_S)
                        self._retry_at = time.monotonic() + RETRY_S  # they die starting: not on every message
                if time.monotonic() < self._retry_at:
                    self._generation = None
                    raise PrepareWorkerError(f"prepare workers failed to start; next try in under {RETRY_S:.0f} s")
                self._version = self.registry.version
                gen = self._generation = _Generation(self.workers, (self.registry.registrations(), self.base_url,
                                                                    self.validate))
            return gen

    def start(self) -> None:
        """Start every worker now, so the first messages do not wait for them (a failure is only logged)."""
        try:
            gen = self._current()
            deadline = time.monotonic() + START_TIMEOUT_S
            while not all(w.ready.is_set() for w in gen.workers):
                if gen.broken or time.monotonic() > deadline:
                    raise PrepareWorkerError("a prepare worker died starting" if gen.broken
                                             else "the prepare workers did not start in time")
                gen.workers[0].ready.wait(0.05)
        except Exception:  # noqa: BLE001 - the pipeline maps in-process until the pool works
            log.exception("HL7v2 prepare workers did not start")

    def pids(self) -> list[int]:
        """The worker processes' ids (operators and tests)."""
        with self._lock:
            gen = self._generation
            return sorted(w.process.pid for w in gen.workers if w.process.pid) if gen is not None else []

    def submit(self, raw: bytes, msg_id: int) -> Future[bytes] | None:
        """The message's mapping (pickled, for ``loads_mapped``), underway; None when the pool is unusable
        (the caller maps it itself)."""
        try:
            return self._current().submit(msg_id.to_bytes(8, "big", signed=True) + raw)
        except PrepareWorkerError:  # waiting to retry workers that died starting (logged when they did)
            return None
        except Exception:  # noqa: BLE001 - a broken or closed pool: map in-process, rebuild next time
            log.exception("HL7v2 prepare pool unusable; mapping in the writer's thread")
            return None

    def close(self) -> None:
        with self._lock:
            gen, self._generation = self._generation, None
        if gen is not None:
            gen.close(wait=True)
