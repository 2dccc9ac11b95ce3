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
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
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
        bundle, _patient = map_to_bundle(msg, header, store_id=msg_id)
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


def _ready() -> int:
    return os.getpid()


# ---------------------------------------------------------------- in the server
class PreparePool:
    """A process pool replaying the server's search parameters; rebuilt when they change."""

    def __init__(self, workers: int, registry: SearchParamRegistry, *, base_url: str | None = None,
                 validate: bool = True) -> None:
        self.workers = workers
        self.registry = registry
        self.base_url = base_url
        self.validate = validate
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._version = -1

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None or self._version != self.registry.version:
                if self._executor is not None:
                    self._executor.shutdown(wait=False, cancel_futures=False)
                self._version = self.registry.version
                # spawn, not fork: the server has threads and open database connections
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                    initargs=(self.registry.registrations(), self.base_url, self.validate))
            return self._executor

    def start(self) -> None:
        """Start every worker now, so the first messages do not wait for them (a failure is only logged)."""
        try:
            pool = self._pool()
            for f in [pool.submit(_ready) for _ in range(self.workers)]:
                f.result(timeout=120)
        except Exception:  # noqa: BLE001 - the pipeline maps in-process until the pool works
            log.exception("HL7v2 prepare workers did not start")

    def pids(self) -> list[int]:
        """The worker processes' ids (operators and tests)."""
        with self._lock:
            procs = getattr(self._executor, "_processes", None) or {}
            return sorted(procs)

    def submit(self, raw: bytes, msg_id: int) -> Future[bytes] | None:
        """The message's mapping (pickled, for ``loads_mapped``), underway; None when the pool is unusable
        (the caller maps it itself)."""
        try:
            return self._pool().submit(_map_and_prepare, raw, msg_id)
        except Exception:  # noqa: BLE001 - a broken or closed pool: map in-process, rebuild next time
            log.exception("HL7v2 prepare pool unusable; mapping in the writer's thread")
            with self._lock:
                self._executor = None
            return None

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
