"""Ingest: persist raw -> dedup -> parse -> map -> one FHIR transaction -> record outcome -> ACK.

The raw message is committed to the message store before anything else, and
the application ACK is built only after the FHIR transaction committed, so an
AA always means "stored and applied".  Processing is serialized by one lock:
messages are applied in arrival order, which keeps per-patient order (an A08
never overtakes the A01 before it) and makes the dedup check race-free.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


class Hl7Pipeline:
    def __init__(
        self,
        store: MessageStore,
        apply_transaction: ApplyTransaction,
        *,
        parser: str = "er7",
        receiver: tuple[str, str] = ("DIGITALFRONT", "DIGITALFRONT"),
    ) -> None:
        self.store = store
        self.apply_transaction = apply_transaction
        self.parser = parser
        self.receiver = receiver
        self._lock = threading.Lock()

    # -- entry points -------------------------------------------------------------------------
    def ingest(self, raw: bytes, source: str, on_commit: Callable[[bytes], None] | None = None) -> IngestResult:
        """Handle one inbound message; ``on_commit`` gets the enhanced-mode commit ACK (CA) as soon as
        the raw message is durable, before processing."""
        try:
            msg, header = parse(raw, engine=self.parser)
        except (Er7Error, UnicodeDecodeError, IndexError) as exc:
            return self._reject(raw, source, None, AckError(("100", "Segment sequence error"), str(exc)))
        if header.version and header.version not in SUPPORTED_VERSIONS:
            return self._reject(
                raw,
                source,
                header,
                AckError(ERR_UNSUPPORTED_VERSION, f"version {header.version} is not supported", "MSH^1^12"),
                msg.enc,
            )
        with self._lock:
            original = self.store.find_original(header.sending_application, header.sending_facility, header.control_id)
            if original is not None and original.ack is not None and original.status != "received":
                dup_id = self.store.insert(
                    raw,
                    source=source,
                    status="duplicate",
                    header=header,
                    ack_code=original.ack_code,
                    ack=original.ack,
                    duplicate_of=original.id,
                )
                return IngestResult(
                    dup_id,
                    "duplicate",
                    original.ack_code or "AA",
                    [original.ack],
                    original.resources,
                    original.id,
                )
            if original is not None:  # stored but never finished (crash): retry that row
                msg_id = original.id
            else:
                msg_id = self.store.insert(raw, source=source, status="received", header=header)
            acks: list[bytes] = []
            if header.enhanced_mode and wants_ack(header.accept_ack_type, True):
                commit = build_ack(header, "CA", enc=msg.enc, receiver=self.receiver)
                if on_commit is not None:
                    on_commit(commit)
                else:
                    acks.append(commit)
            result = self._process(msg_id, msg, header)
            result.acks = acks + result.acks
            return result

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
    def _reject(
        self, raw: bytes, source: str, header: Header | None, err: AckError, enc: Encoding | None = None
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
    ) -> IngestResult:
        text = errors[0].diagnostic if errors else ""
        ack = build_ack(header, code, text=text, errors=errors, enc=enc, receiver=self.receiver)
        self.store.finish(msg_id, status=status, ack_code=code, ack=ack, outcome=outcome, resources=resources)
        send = not header.enhanced_mode or wants_ack(header.application_ack_type, code == "AA")
        return IngestResult(msg_id, status, code, [ack] if send else [], resources or [])

    def _process(self, msg_id: int, msg: Er7Message, header: Header) -> IngestResult:
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
            )
        try:
            response = self.apply_transaction(bundle)
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
            )
        return self._finish(msg_id, header, msg.enc, "processed", "AA", resources=resources_of(response))
