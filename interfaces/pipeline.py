"""Ingest: persist raw -> dedup -> parse -> map -> one FHIR transaction -> record outcome -> ACK.

The raw message is committed to the message store before anything else, and
the application ACK is built only after the FHIR transaction committed, so an
AA always means "stored and applied".  Processing is serialized by one lock:
messages are applied in arrival order, which keeps per-patient order (an A08
never overtakes the A01 before it) and makes the dedup check race-free.

Group commit (``ingest_batch``): the messages waiting at one moment are stored
raw in one commit, then applied in ONE database transaction, each inside its
own savepoint, together with their store outcome rows; the ACKs go out after
that single commit.  Two commits per group instead of three per message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from interfaces.ack import (
    ERR_INTERNAL,
    ERR_UNSUPPORTED_EVENT,
    ERR_UNSUPPORTED_TYPE,
    ERR_UNSUPPORTED_VERSION,
    AckError,
    build_ack,
    wants_ack,
)
from interfaces.er7 import Encoding, Er7Error, Er7Message
from interfaces.mapping import MappingError, UnsupportedMessage, map_to_bundle
from interfaces.parsing import SUPPORTED_VERSIONS, Header, parse
from interfaces.store import MessageStore

log = logging.getLogger(__name__)

ApplyTransaction = Callable[[dict[str, Any]], dict[str, Any]]
OnCommit = Callable[[bytes], None]
MAX_GROUP = 64  # messages per group commit: bounds the ACK latency of the first one


class GroupTx(Protocol):
    @property
    def connection(self) -> Any: ...

    def apply(self, bundle: dict[str, Any]) -> dict[str, Any]: ...


class GroupWriter(Protocol):
    def transaction(self) -> AbstractContextManager[GroupTx]: ...


@dataclass
class IngestResult:
    message_id: int
    status: str
    ack_code: str
    acks: list[bytes] = field(default_factory=list)  # frames to send back, in order
    resources: list[str] = field(default_factory=list)
    duplicate_of: int | None = None


def resources_of(response: dict[str, Any]) -> list[str]:
    """``Type/id`` of every entry the transaction wrote (from entry.response.location)."""
    out: list[str] = []
    for e in response.get("entry", []) or []:
        loc = (e.get("response") or {}).get("location") or ""
        parts = loc.split("/_history")[0].split("/")
        if len(parts) >= 2:
            out.append(f"{parts[-2]}/{parts[-1]}")
    return out


def _error_detail(exc: BaseException) -> tuple[str, dict[str, Any] | None]:
    outcome = getattr(exc, "outcome", None)
    oo = outcome() if callable(outcome) else None
    return str(exc) or exc.__class__.__name__, oo


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
    ) -> None:
        self.store = store
        self.apply_transaction = apply_transaction
        self.parser = parser
        self.receiver = receiver
        self.group = group
        self._lock = threading.Lock()

    # -- entry points -------------------------------------------------------------------------
    def ingest(self, raw: bytes, source: str, on_commit: OnCommit | None = None) -> IngestResult:
        """Handle one inbound message; ``on_commit`` gets the enhanced-mode commit ACK (CA) as soon as
        the raw message is durable, before processing."""
        return self.ingest_batch([(raw, source, on_commit)])[0]

    def ingest_batch(self, items: Sequence[tuple[bytes, str, OnCommit | None]]) -> list[IngestResult]:
        """Handle messages in arrival order with group commit; one result per item, same order."""
        pending = [self._parse(raw, source, cb) for raw, source, cb in items]
        chunk: list[_Pending] = []
        keys: set[tuple[str, str, str]] = set()
        for p in pending:
            key = p.key
            # the same control id twice in one group: the second must see the first's ACK (duplicate rule)
            if len(chunk) >= MAX_GROUP or (key is not None and key in keys):
                self._ingest_group(chunk)
                chunk, keys = [], set()
            chunk.append(p)
            if key is not None:
                keys.add(key)
        if chunk:
            self._ingest_group(chunk)
        return [p.result for p in pending if p.result is not None]

    def replay(self, msg_id: int) -> IngestResult:
        """Reprocess a stored message (after a mapping fix); dedup does not apply to replays."""
        stored = self.store.get(msg_id)
        if stored is None:
            raise KeyError(msg_id)
        with self._lock:
            try:
                msg, header = parse(stored.raw, engine=self.parser)
            except Er7Error as exc:
                ack = build_ack(
                    None,
                    "AR",
                    errors=[AckError(("100", "Segment sequence error"), str(exc))],
                    receiver=self.receiver,
                )
                self.store.finish(msg_id, status="rejected", ack_code="AR", ack=ack, outcome={"error": str(exc)})
                return IngestResult(msg_id, "rejected", "AR", [ack])
            return self._process(msg_id, msg, header)

    # -- internals ----------------------------------------------------------------------------
    def _parse(self, raw: bytes, source: str, on_commit: OnCommit | None) -> _Pending:
        p = _Pending(raw, source, on_commit)
        try:
            p.msg, p.header = parse(raw, engine=self.parser)
        except (Er7Error, UnicodeDecodeError, IndexError) as exc:
            p.reject = AckError(("100", "Segment sequence error"), str(exc))
            return p
        if p.header.version and p.header.version not in SUPPORTED_VERSIONS:
            p.reject = AckError(
                ERR_UNSUPPORTED_VERSION, f"version {p.header.version} is not supported", "MSH^1^12"
            )
        return p

    def _ingest_group(self, chunk: list[_Pending]) -> None:
        with self._lock:
            # 1. one commit makes every raw message durable (and settles rejects and duplicates)
            with self.store.write_engine.begin() as conn:
                todo = [p for p in chunk if self._receive(p, conn)]
            for p in todo:
                assert p.header is not None and p.msg is not None
                if p.header.enhanced_mode and wants_ack(p.header.accept_ack_type, True):
                    commit = build_ack(p.header, "CA", enc=p.msg.enc, receiver=self.receiver)
                    if p.on_commit is not None:
                        p.on_commit(commit)
                    else:
                        p.acks.append(commit)
            # 2. one transaction applies them all, each in its own savepoint, outcomes included
            if self.group is not None and todo:
                try:
                    with self.group.transaction() as tx:
                        results = [self._process(p.msg_id, p.msg, p.header, tx.apply, tx.connection)
                                   for p in todo if p.msg is not None and p.header is not None]
                    for p, r in zip(todo, results, strict=True):
                        p.result = r
                    todo = []
                except Exception:  # the group commit itself failed: apply one by one
                    log.exception("HL7v2 group commit of %d messages failed; retrying one by one", len(todo))
            for p in todo:
                assert p.msg is not None and p.header is not None
                p.result = self._process(p.msg_id, p.msg, p.header)
            for p in chunk:
                if p.result is not None and p.acks:
                    p.result.acks = p.acks + p.result.acks

    def _receive(self, p: _Pending, conn: Any) -> bool:
        """Store ``p`` (rejected, duplicate or received); True when it still has to be processed."""
        header = p.header
        if p.reject is not None or header is None:
            err = p.reject or AckError(("100", "Segment sequence error"), "unparsable message")
            p.result = self._reject(p.raw, p.source, header, err, p.msg.enc if p.msg else None, conn)
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
            p.result = IngestResult(
                dup_id, "duplicate", original.ack_code or "AA", [original.ack], original.resources, original.id
            )
            return False
        if original is not None:  # stored but never finished (crash): retry that row
            p.msg_id = original.id
        else:
            p.msg_id = self.store.insert(p.raw, source=p.source, status="received", header=header, conn=conn)
        return True

    def _reject(
        self,
        raw: bytes,
        source: str,
        header: Header | None,
        err: AckError,
        enc: Encoding | None = None,
        conn: Any = None,
    ) -> IngestResult:
        code = "CR" if header is not None and header.enhanced_mode else "AR"
        ack = build_ack(header, code, text=err.diagnostic, errors=[err], enc=enc, receiver=self.receiver)
        msg_id = self.store.insert(
            raw,
            source=source,
            status="rejected",
            header=header,
            ack_code=code,
            ack=ack,
            outcome={"error": err.diagnostic, "code": err.code[0]},
            conn=conn,
        )
        return IngestResult(msg_id, "rejected", code, [ack])

    def _finish(
        self,
        msg_id: int,
        header: Header,
        enc: Encoding,
        status: str,
        code: str,
        *,
        errors: list[AckError] | None = None,
        outcome: Any = None,
        resources: list[str] | None = None,
        conn: Any = None,
    ) -> IngestResult:
        text = errors[0].diagnostic if errors else ""
        ack = build_ack(header, code, text=text, errors=errors, enc=enc, receiver=self.receiver)
        self.store.finish(
            msg_id, status=status, ack_code=code, ack=ack, outcome=outcome, resources=resources, conn=conn
        )
        send = not header.enhanced_mode or wants_ack(header.application_ack_type, code == "AA")
        return IngestResult(msg_id, status, code, [ack] if send else [], resources or [])

    def _process(
        self,
        msg_id: int,
        msg: Er7Message,
        header: Header,
        apply: ApplyTransaction | None = None,
        conn: Any = None,
    ) -> IngestResult:
        try:
            bundle, _patient = map_to_bundle(msg, header, store_id=msg_id)
        except UnsupportedMessage as exc:
            known_type = header.message_code in {
                k.split("_")[0] for k in ("ADT_", "ORU_", "ORM_", "OML_", "VXU_", "SIU_", "MDM_")
            }
            err = AckError(ERR_UNSUPPORTED_EVENT if known_type else ERR_UNSUPPORTED_TYPE, str(exc), "MSH^1^9")
            return self._finish(
                msg_id,
                header,
                msg.enc,
                "rejected",
                "AR",
                errors=[err],
                outcome={"error": str(exc), "code": err.code[0]},
                conn=conn,
            )
        except MappingError as exc:
            err = AckError(exc.code, str(exc), exc.location)
            return self._finish(
                msg_id,
                header,
                msg.enc,
                "error",
                "AE",
                errors=[err],
                outcome={"error": str(exc), "code": exc.code[0], "location": exc.location},
                conn=conn,
            )
        try:
            response = (apply or self.apply_transaction)(bundle)
        except Exception as exc:  # the FHIR core rejected or failed the write: keep for replay
            text, oo = _error_detail(exc)
            status_code = getattr(exc, "status", None)
            if status_code is None:
                log.exception("HL7v2 message %s: FHIR transaction failed", msg_id)
            err = AckError(ERR_INTERNAL, f"FHIR transaction failed: {text}")
            return self._finish(
                msg_id,
                header,
                msg.enc,
                "error",
                "AE",
                errors=[err],
                outcome={"error": text, "code": err.code[0], "status": status_code, "operationOutcome": oo},
                conn=conn,
            )
        return self._finish(
            msg_id, header, msg.enc, "processed", "AA", resources=resources_of(response), conn=conn
        )
