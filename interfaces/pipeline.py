"""Ingest: persist raw -> dedup -> parse -> map -> one FHIR transaction -> record outcome -> ACK.

The raw message is committed to the message store before anything else, and
the application ACK is built only after the FHIR transaction committed, so an
AA always means "stored and applied".  One writer thread per pipeline does every
database write, in arrival order, which keeps per-patient order (an A08 never
overtakes the A01 before it) and makes the dedup check race-free.

Group commit (``submit``; ``ingest_batch`` waits for it): the messages that
arrived since the writer's last turn are stored raw in one commit, then the
longest run of stored messages whose mapping is ready is applied in ONE database
transaction, each inside its own savepoint, together with their store outcome
rows; their ACKs go out after that single commit.  That commit also stores the
messages that arrived before or during the turn, to be applied in the next one.
Worker processes (``interfaces/prepare.py``) map, validate and index messages as
they arrive; what each message becomes (AA/AE/AR, its ACK and store outcome) is
``interfaces/outcome.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.interactions.prepared import PreparedBundle, with_token_value
from interfaces.ack import ERR_INTERNAL, ERR_UNSUPPORTED_VERSION, AckError
from interfaces.er7 import Er7Error, Er7Message
from interfaces.mapping.builder import MESSAGE_ID_SYSTEM, PENDING_STORE_ID, stamp_store_id
from interfaces.outcome import (
    ApplyTransaction,
    IngestResult,
    MessageOutcomes,
    lost_race,
    sends_application_ack,
)
from interfaces.parsing import SUPPORTED_VERSIONS, Header, parse
from interfaces.prepare import Mapped, MessageGivenUp, PreparePool, loads_mapped
from interfaces.store import MessageStore

log = logging.getLogger(__name__)

OnCommit = Callable[[bytes], None]
MAX_GROUP = 64  # messages per group commit: bounds the ACK latency of the first one
WRITER_IDLE_S = 30.0  # the writer thread leaves after this long without work
# A message arriving this long after the previous one, to an idle writer, is mapped by the writer itself: on
# a quiet feed the worker round trip only adds latency (measured: ACK after ~12 ms instead of ~16-21 ms).
# Inside a burst the writer is the bottleneck, and mapping there cost 14% of throughput (bench/RESULTS.md).
QUIET_S = 0.1
# ... unless it is larger than this: only a worker's mapping has a deadline (prepare.MAP_TIMEOUT_S), and a
# large message is where one that never finishes would come from (64 KiB: an ORU of ~1,000 results).
QUIET_MAX_BYTES = 64 * 1024


class GroupTx(Protocol):
    @property
    def connection(self) -> Any: ...

    def apply(self, bundle: dict[str, Any], prepared: PreparedBundle | None = None) -> dict[str, Any]: ...


class GroupWriter(Protocol):
    def transaction(self) -> AbstractContextManager[GroupTx]: ...


@dataclass
@dataclass
class PipelineStats:
    group_commits: int = 0  # transactions that applied messages
    applied: int = 0  # messages they applied
    largest_group: int = 0
    prepared: int = 0  # messages whose mapping, validation and index rows came from a worker process
    stored_with_group: int = 0  # messages stored by the commit of a group being applied (no commit of their own)


@dataclass
class _Pending:
    """One message of a group, between parsing and its ACK."""

    raw: bytes
    source: str
    on_commit: OnCommit | None
    msg: Er7Message | None = None
    header: Header | None = None
    reject: AckError | None = None
    msg_id: int = 0
    acks: list[bytes] = field(default_factory=list)
    result: IngestResult | None = None
    prepared: Future[bytes] | None = None  # a worker mapping it (its result pickled)
    deferred: bool = False  # its control id was still being applied when it arrived: received after that
    done: Future[IngestResult] = field(default_factory=Future)

    @property
    def key(self) -> tuple[str, str, str] | None:
        h = self.header
        return (h.sending_application, h.sending_facility, h.control_id) if h and h.control_id else None


class Hl7Pipeline:
    def __init__(
        self,
        store: MessageStore,
        apply_transaction: ApplyTransaction,
        *,
        parser: str = "er7",
        receiver: tuple[str, str] = ("DIGITALFRONT", "DIGITALFRONT"),
        group: GroupWriter | None = None,
        prepare_pool: PreparePool | None = None,
    ) -> None:
        self.store = store
        self.outcomes = MessageOutcomes(store, apply_transaction, receiver)
        self.parser = parser
        self.group = group
        self.prepare_pool = prepare_pool if group is not None else None  # only the group path applies prepared work
        self._lock = threading.Lock()  # one writer at a time (the writer thread, replays)
        self._cv = threading.Condition()
        self._arrivals: list[_Pending] = []  # submitted, not yet received (raw not yet committed)
        self._received: list[_Pending] = []  # raw committed, waiting to be applied (writer thread only)
        self._writer: threading.Thread | None = None
        self._waiting = False  # the writer thread waits for work
        self._last_submit = 0.0  # time.monotonic() of the last submit
        self._closing = False
        self.stats = PipelineStats()

    # -- entry points -------------------------------------------------------------------------
    def ingest(self, raw: bytes, source: str, on_commit: OnCommit | None = None) -> IngestResult:
        """Handle one inbound message; ``on_commit`` gets the enhanced-mode commit ACK (CA) as soon as
        the raw message is durable, before processing."""
        return self.ingest_batch([(raw, source, on_commit)])[0]

    def ingest_batch(self, items: Sequence[tuple[bytes, str, OnCommit | None]]) -> list[IngestResult]:
        """Handle messages in arrival order with group commit; one result per item, same order."""
        return [f.result() for f in self.submit(items)]

    def submit(self, items: Sequence[tuple[bytes, str, OnCommit | None]]) -> list[Future[IngestResult]]:
        """Queue messages for the writer thread; each future resolves (with its ACKs) after its commit."""
        pending = [self._parse(raw, source, cb) for raw, source, cb in items]
        now = time.monotonic()
        with self._cv:  # a lone message on a quiet feed: mapped by the idle writer itself, no round trip
            quiet = len(pending) == 1 and not self._arrivals and not self._received and (
                self._waiting or self._writer is None or not self._writer.is_alive()) \
                and now - self._last_submit > QUIET_S and len(pending[0].raw) <= QUIET_MAX_BYTES
            self._last_submit = now
        pool = None if quiet else self.prepare_pool
        if pool is not None:  # workers map while the writer stores (the store id is stamped in later)
            for p in pending:
                if p.reject is None:
                    p.prepared = pool.submit(p.raw, PENDING_STORE_ID)
                    if p.prepared is not None:
                        p.prepared.add_done_callback(self._wake)
        with self._cv:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="hl7-writer", daemon=True)
                self._writer.start()
            self._arrivals.extend(pending)
            self._cv.notify()
        return [p.done for p in pending]

    def close(self) -> None:
        """Finish what was queued, stop the writer thread and the worker processes."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._writer is not None:
            self._writer.join(60)
        if self.prepare_pool is not None:
            self.prepare_pool.close()

    def replay(self, msg_id: int) -> IngestResult:
        """Reprocess a stored message (after a mapping fix); dedup does not apply to replays."""
        stored = self.store.get(msg_id)
        if stored is None:
            raise KeyError(msg_id)
        with self._lock:
            msg, header, reject = self._checked_parse(stored.raw)
            if reject is not None or msg is None or header is None:
                err = reject or AckError(("100", "Segment sequence error"), "unparsable message")
                code, ack, outcome = self.outcomes.reject_ack(header, err, msg.enc if msg else None)
                self.store.finish(msg_id, status="rejected", ack_code=code, ack=ack, outcome=outcome)
                return IngestResult(msg_id, "rejected", code, [ack])
            return self.outcomes.process(msg_id, msg, header)

    # -- internals ----------------------------------------------------------------------------
    def _parse(self, raw: bytes, source: str, on_commit: OnCommit | None) -> _Pending:
        p = _Pending(raw, source, on_commit)
        p.msg, p.header, p.reject = self._checked_parse(raw)
        return p

    def _checked_parse(self, raw: bytes) -> tuple[Er7Message | None, Header | None, AckError | None]:
        """The message and its header, or why it is rejected (with the header when one could be read, so the
        AR echoes MSH-10)."""
        nul = raw.find(b"\x00")
        try:  # a NUL is read past for the header (PostgreSQL cannot store one in the store's text columns)
            msg, header = parse(raw.replace(b"\x00", b"") if nul >= 0 else raw, engine=self.parser)
        except (Er7Error, UnicodeDecodeError, IndexError) as exc:
            return None, None, AckError(("100", "Segment sequence error"), str(exc))
        if nul >= 0:
            return msg, header, AckError(("102", "Data type error"),
                                         f"the message contains a NUL byte (offset {nul}), which HL7v2 does not allow")
        if header.version and header.version not in SUPPORTED_VERSIONS:
            return msg, header, AckError(ERR_UNSUPPORTED_VERSION, f"version {header.version} is not supported",
                                         "MSH^1^12")
        return msg, header, None

    # -- the writer thread: every database write of the pipeline, in arrival order ----------------
    def _write_loop(self) -> None:
        """Receive what arrived (one commit; the workers start mapping it), then apply the longest run of
        received messages whose mapping is ready (one commit), and again: while the writer applies one
        group, the workers prepare the next, and every message is applied in arrival order."""
        while True:
            with self._cv:
                while not self._arrivals and not self._ready_head() and not (self._closing and not self._received):
                    self._waiting = True
                    woke = self._cv.wait(WRITER_IDLE_S)
                    self._waiting = False
                    if not woke and not self._arrivals and not self._received:
                        self._writer = None  # idle: the next submit starts a new one
                        return
                if self._closing and not self._arrivals and not self._received:
                    return
                arrivals, self._arrivals = self._arrivals, []
            group: list[_Pending] = []
            late: list[_Pending] = []  # what arrives while a group is applied: stored by that group's commit
            try:
                if arrivals and self.group is not None and self._ready_head() and not self._received[0].deferred:
                    group = self._take_ready()  # one commit applies the ready run and stores the arrivals
                    self._apply(group, arrivals)
                else:
                    if arrivals:
                        self._receive_all(arrivals)
                    group = self._take_ready()
                    if group:
                        self._apply(group, late)
            except Exception as exc:  # noqa: BLE001 - never lose the writer: fail these messages, go on
                log.exception("HL7v2 writer failed; the messages stay in the store for replay")
                for p in [*arrivals, *late, *group, *self._received]:
                    if not p.done.done():
                        p.done.set_exception(exc)
                self._received = [p for p in self._received if not p.done.done()]
            finally:
                for p in [*arrivals, *late]:
                    if p.result is not None and not p.done.done():
                        p.done.set_result(p.result)

    def _ready_head(self) -> bool:
        head = self._received[0] if self._received else None
        return head is not None and (head.prepared is None or head.prepared.done())

    def _receive_all(self, arrivals: list[_Pending]) -> None:
        """One commit makes every raw message durable (and settles rejects and duplicates)."""
        with self._lock:
            queued = self._store_each(arrivals, [])
        self._received_committed(queued)

    def _store_each(self, arrivals: list[_Pending], applying: list[_Pending]) -> list[_Pending]:
        """Store ``arrivals`` in one commit; when that fails, in one commit each, so that a message the store
        cannot take fails alone (no ACK: it was not stored) instead of every message that arrived with it."""
        try:
            with self.store.write_engine.begin() as conn:
                return self._store_arrivals(arrivals, conn, applying)
        except Exception as exc:  # noqa: BLE001 - decided per message below
            self._forget_receipt(arrivals)
            if len(arrivals) == 1:
                log.exception("HL7v2 message could not be stored; it gets no ACK")
                arrivals[0].done.set_exception(exc)
                return []
        log.warning("storing %d HL7v2 messages in one commit failed; storing them one by one", len(arrivals))
        queued: list[_Pending] = []
        for p in arrivals:
            queued.extend(self._store_each([p], [*applying, *queued]))
        return queued

    def _store_arrivals(self, arrivals: list[_Pending], conn: Any, applying: list[_Pending]) -> list[_Pending]:
        """Store the raw messages on ``conn`` (not committed yet); the ones still to apply, in arrival order.

        ``applying``: the messages this same transaction applies (a re-send of one of them waits, as for the
        messages received before)."""
        inflight = {p.key for p in (*self._received, *applying) if p.key is not None}
        queued: list[_Pending] = []
        for p in arrivals:
            if p.key is not None and p.key in inflight:  # its original is not applied yet: decide later
                p.deferred = True
                queued.append(p)
            elif self._receive(p, conn):
                queued.append(p)
                if p.key is not None:
                    inflight.add(p.key)
        return queued

    @staticmethod
    def _forget_receipt(arrivals: list[_Pending]) -> None:
        """The transaction that stored ``arrivals`` rolled back: nothing of their receipt holds."""
        for p in arrivals:
            p.msg_id, p.result, p.deferred = 0, None, False

    def _received_committed(self, queued: list[_Pending]) -> None:
        """After the commit that stored ``queued``: commit ACKs, the writer's queue."""
        todo = [p for p in queued if not p.deferred]
        self._committed(todo)
        self._received.extend(queued)

    def _wake(self, _future: Any) -> None:
        with self._cv:
            self._cv.notify()

    def _committed(self, todo: list[_Pending]) -> None:
        """Enhanced mode: the commit ACK (CA) goes out as soon as the raw message is durable."""
        for p in todo:
            commit = self._commit_ack(p)
            if commit is None:
                continue
            if p.on_commit is not None:
                p.on_commit(commit)
            else:
                p.acks.append(commit)

    def _commit_ack(self, p: _Pending) -> bytes | None:
        assert p.header is not None and p.msg is not None
        return self.outcomes.commit_ack(p.header, p.msg.enc)

    def _take_ready(self) -> list[_Pending]:
        """The received messages that can be applied now, in order (a deferred one goes alone, first)."""
        group: list[_Pending] = []
        for p in self._received:
            if len(group) >= MAX_GROUP or (p.deferred and group):
                break
            if p.prepared is not None and not p.prepared.done():
                break
            group.append(p)
            if p.deferred:
                break
        del self._received[:len(group)]
        return group

    def _apply(self, group: list[_Pending], arrivals: list[_Pending] | None = None) -> None:
        """Apply ``group`` in one transaction; ``arrivals`` (new messages, not deferred ones), and every message
        that arrives while the group is applied (appended to ``arrivals``), are stored by the same commit (one
        commit, one sync, per turn of a busy writer) and applied in the next turn.

        Storing the late arrivals at the end of the turn, instead of at the start of the next, saves them a
        turn: senders answer an ACK within a millisecond, just after the next turn began, so their next
        message used to wait a turn to be stored and another to be applied (bench/RESULTS.md)."""
        with self._lock:
            if group[0].deferred:  # its original has committed by now: a duplicate, or a crash retry
                with self.store.write_engine.begin() as conn:
                    todo = [p for p in group if self._receive(p, conn)]
                self._committed(todo)
            else:
                todo = group
            # one transaction applies them all, each in its own savepoint, outcomes included
            if self.group is not None and todo:
                try:
                    with self.group.transaction() as tx:
                        results = [self.outcomes.process(p.msg_id, p.msg, p.header, tx.apply, tx.connection,
                                                         self._mapped(p))
                                   for p in todo if p.msg is not None and p.header is not None]
                        if arrivals is not None:
                            with self._cv:
                                arrivals.extend(self._arrivals)
                                self._arrivals = []
                        queued = self._store_arrivals(arrivals, tx.connection, todo) if arrivals else []
                    for p, r in zip(todo, results, strict=True):
                        p.result = r
                    todo = []
                    if arrivals:
                        self.stats.stored_with_group += len(arrivals)
                        self._received_committed(queued)
                        arrivals = None
                except Exception as exc:  # the group commit itself failed: apply one by one
                    if lost_race(exc):
                        log.warning("HL7v2 group commit of %d messages lost a race with a concurrent write (%s); "
                                    "applying them one by one", len(todo), exc)
                    else:
                        log.exception("HL7v2 group commit of %d messages failed; retrying one by one", len(todo))
                    if arrivals:
                        self._forget_receipt(arrivals)
            if arrivals:  # not stored with the group: in their own commit, before anything else
                self._received_committed(self._store_each(arrivals, todo))
            for p in todo:
                assert p.msg is not None and p.header is not None
                p.result = self.outcomes.process(p.msg_id, p.msg, p.header)
        st = self.stats
        st.group_commits += 1
        st.applied += len(group)
        st.largest_group = max(st.largest_group, len(group))
        st.prepared += sum(1 for p in group if p.prepared is not None and p.prepared.done()
                           and not p.prepared.cancelled() and p.prepared.exception() is None)
        for p in group:
            assert p.result is not None
            if p.acks:
                p.result.acks = p.acks + p.result.acks
            p.done.set_result(p.result)

    def _receive(self, p: _Pending, conn: Any) -> bool:
        """Store ``p`` (rejected, duplicate or received); True when it still has to be processed."""
        header = p.header
        if p.reject is not None or header is None:
            err = p.reject or AckError(("100", "Segment sequence error"), "unparsable message")
            p.result = self.outcomes.reject(p.raw, p.source, header, err, p.msg.enc if p.msg else None, conn)
            return False
        original = self.store.find_original(
            header.sending_application, header.sending_facility, header.control_id, conn=conn
        )
        if original is not None and original.ack is not None and original.status != "received":
            dup_id = self.store.insert(
                p.raw,
                source=p.source,
                status="duplicate",
                header=header,
                ack_code=original.ack_code,
                ack=original.ack,
                duplicate_of=original.id,
                conn=conn,
            )
            p.result = IngestResult(dup_id, "duplicate", original.ack_code or "AA",
                                    self._duplicate_acks(p, original.ack, original.ack_code),
                                    original.resources, original.id)
            return False
        if original is not None:  # stored but never finished (crash): retry that row
            p.msg_id = original.id
        else:
            p.msg_id = self.store.insert(p.raw, source=p.source, status="received", header=header, conn=conn)
        return True

    def _duplicate_acks(self, p: _Pending, ack: bytes, code: str | None) -> list[bytes]:
        """What the original got, as this re-send asks for it: in enhanced mode a commit ACK (the re-send is
        stored, as a duplicate) when MSH-15 wants one, then the original application ACK when MSH-16 wants
        it, so a sender waiting for both frames gets both. A commit-level refusal (CR/CE) is answered alone."""
        assert p.header is not None
        if not p.header.enhanced_mode or code in ("CR", "CE"):
            return [ack]
        commit = self._commit_ack(p)  # sent with the result, after the commit that stores the duplicate row
        return ([commit] if commit is not None else []) + (
            [ack] if sends_application_ack(p.header, code or "AA") else [])

    @staticmethod
    def _mapped(p: _Pending) -> Mapped | None:
        """A worker's result, with the message's store id; None (map in this thread) when there was no worker
        or it failed."""
        if p.prepared is None:
            return None
        try:
            mapped = loads_mapped(p.prepared.result())
        except MessageGivenUp as exc:  # mapped here, it would do the same harm: AE, kept for replay
            return Mapped(error=str(exc), error_code=ERR_INTERNAL)
        except Exception:  # noqa: BLE001 - its worker died with it queued, or the pool broke: mapped here
            log.exception("HL7v2 prepare worker failed; mapping in the writer's thread")
            return None
        i = stamp_store_id(mapped.bundle, p.msg_id) if mapped.bundle is not None else None
        if i is not None and mapped.prepared is not None:
            entry = mapped.prepared.entries[i]
            if entry is not None:  # its index rows hold the pending id too (Provenance?entity:identifier)
                mapped.prepared.entries[i] = with_token_value(entry, MESSAGE_ID_SYSTEM, str(PENDING_STORE_ID),
                                                              str(p.msg_id))
        return mapped
