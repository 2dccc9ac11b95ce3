"""What one stored HL7v2 message becomes: applied (AA), refused (AR/CR) or failed (AE), with its ACKs.

The pipeline (``interfaces/pipeline.py``) decides when and in which transaction a message is stored and
applied: the writer thread, group commit, arrival order. This module is the part that does not depend on
that: mapping a message (when no worker did), applying its Bundle through the FHIR core, building the ACK
for the outcome and recording it in the message store, on the connection of whatever transaction the
pipeline holds.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.interactions.prepared import PreparedBundle
from fhir_server.repository import PartialStepWrite
from interfaces.ack import ERR_INTERNAL, ERR_UNSUPPORTED_EVENT, ERR_UNSUPPORTED_TYPE, AckError, build_ack, wants_ack
from interfaces.er7 import Encoding, Er7Message
from interfaces.mapping import MAPPERS
from interfaces.parsing import Header
from interfaces.prepare import Mapped, map_message
from interfaces.store import MessageStore

log = logging.getLogger(__name__)

ApplyTransaction = Callable[[dict[str, Any]], dict[str, Any]]
LOST_RACE_ATTEMPTS = 4  # a message applied alone that lost a race to a concurrent transaction
# the message types we map (an unknown event of one of them is ERR 201, of another type 200)
_MAPPED_TYPES = frozenset(structure.split("_")[0] for structure in MAPPERS)


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


def lost_race(exc: BaseException) -> bool:
    """The core's 409: a concurrent transaction won (there are no If-Match versions in mapped Bundles)."""
    return getattr(exc, "status", None) == 409


def _error_detail(exc: BaseException) -> tuple[str, dict[str, Any] | None]:
    outcome = getattr(exc, "outcome", None)
    oo = outcome() if callable(outcome) else None
    return str(exc) or exc.__class__.__name__, oo


def sends_application_ack(header: Header, code: str) -> bool:
    """Whether the application ACK ``code`` goes back: always in original mode, per MSH-16 in enhanced mode."""
    return not header.enhanced_mode or wants_ack(header.application_ack_type, code == "AA")


class MessageOutcomes:
    """Applies stored messages and records their outcomes and ACKs in the message store."""

    def __init__(self, store: MessageStore, apply_transaction: ApplyTransaction, receiver: tuple[str, str]) -> None:
        self.store = store
        self.apply_transaction = apply_transaction
        self.receiver = receiver

    def commit_ack(self, header: Header, enc: Encoding) -> bytes | None:
        """The commit ACK (CA) of a stored message, when it is in enhanced mode and MSH-15 asks for one."""
        if not (header.enhanced_mode and wants_ack(header.accept_ack_type, True)):
            return None
        return build_ack(header, "CA", enc=enc, receiver=self.receiver)

    def reject(self, raw: bytes, source: str, header: Header | None, err: AckError, enc: Encoding | None = None,
               conn: Any = None) -> IngestResult:
        """Store a refused message (status rejected) with its AR/CR."""
        code, ack, outcome = self.reject_ack(header, err, enc)
        msg_id = self.store.insert(raw, source=source, status="rejected", header=header, ack_code=code, ack=ack,
                                   outcome=outcome, conn=conn)
        return IngestResult(msg_id, "rejected", code, [ack])

    def reject_ack(self, header: Header | None, err: AckError, enc: Encoding | None
                   ) -> tuple[str, bytes, dict[str, Any]]:
        """(code, ACK, store outcome) of a refused message: CR in enhanced mode, AR otherwise."""
        code = "CR" if header is not None and header.enhanced_mode else "AR"
        ack = build_ack(header, code, text=err.diagnostic, errors=[err], enc=enc, receiver=self.receiver)
        return code, ack, {"error": err.diagnostic, "code": err.code[0]}

    def finish(self, msg_id: int, header: Header, enc: Encoding, status: str, code: str, *,
               errors: list[AckError] | None = None, outcome: Any = None, resources: list[str] | None = None,
               conn: Any = None) -> IngestResult:
        """Record a processed message's outcome and ACK on ``conn`` (the applying transaction's, when given)."""
        text = errors[0].diagnostic if errors else ""
        ack = build_ack(header, code, text=text, errors=errors, enc=enc, receiver=self.receiver)
        self.store.finish(msg_id, status=status, ack_code=code, ack=ack, outcome=outcome, resources=resources,
                          conn=conn)
        return IngestResult(msg_id, status, code, [ack] if sends_application_ack(header, code) else [],
                            resources or [])

    def apply_alone(self, bundle: dict[str, Any], msg: Er7Message, header: Header, msg_id: int) -> dict[str, Any]:
        """One message in its own transaction. A race lost to a concurrent transaction (another listener pod's
        group holding a patient's lock: a deadlock; the same new id created twice) is applied again, mapped
        afresh (the core may have changed the first bundle), up to ``LOST_RACE_ATTEMPTS`` times."""
        attempt = 1
        while True:
            try:
                return self.apply_transaction(bundle)
            except Exception as exc:
                if attempt == LOST_RACE_ATTEMPTS or not lost_race(exc):
                    raise
                log.warning("HL7v2 message %s lost a race with a concurrent write (%s); applying it again",
                            msg_id, exc)
            time.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311 - jitter, not a secret
            attempt += 1
            bundle = map_message(msg, header, msg_id).bundle or bundle

    def process(
        self,
        msg_id: int,
        msg: Er7Message,
        header: Header,
        apply: Callable[[dict[str, Any], PreparedBundle | None], dict[str, Any]] | None = None,
        conn: Any = None,
        mapped: Mapped | None = None,
    ) -> IngestResult:
        """Map (unless a worker did: ``mapped``), apply and finish one stored message. ``apply`` and ``conn``:
        the group transaction's; without them the message is applied in a transaction of its own."""
        if mapped is None:
            mapped = map_message(msg, header, msg_id)
        if mapped.unsupported is not None:
            known_type = header.message_code in _MAPPED_TYPES
            err = AckError(ERR_UNSUPPORTED_EVENT if known_type else ERR_UNSUPPORTED_TYPE, mapped.unsupported,
                           "MSH^1^9")
            return self.finish(msg_id, header, msg.enc, "rejected", "AR", errors=[err],
                               outcome={"error": mapped.unsupported, "code": err.code[0]}, conn=conn)
        if mapped.error is not None or mapped.bundle is None:
            text = mapped.error or "no mapping result"
            err = AckError(mapped.error_code, text, mapped.error_location)
            return self.finish(msg_id, header, msg.enc, "error", "AE", errors=[err],
                               outcome={"error": text, "code": mapped.error_code[0],
                                        "location": mapped.error_location}, conn=conn)
        bundle = mapped.bundle
        try:
            if apply is not None:
                response = apply(bundle, mapped.prepared)
            else:
                response = self.apply_alone(bundle, msg, header, msg_id)
        except PartialStepWrite:
            raise  # not this message's fault alone: the whole group rolls back and is applied one by one
        except Exception as exc:  # the FHIR core rejected or failed the write: keep for replay
            if apply is not None and lost_race(exc):
                raise  # the group's transaction is lost: it rolls back and is applied one by one (retried)
            text, oo = _error_detail(exc)
            status_code = getattr(exc, "status", None)
            if status_code is None:
                log.exception("HL7v2 message %s: FHIR transaction failed", msg_id)
            err = AckError(ERR_INTERNAL, f"FHIR transaction failed: {text}")
            return self.finish(msg_id, header, msg.enc, "error", "AE", errors=[err],
                               outcome={"error": text, "code": err.code[0], "status": status_code,
                                        "operationOutcome": oo}, conn=conn)
        return self.finish(msg_id, header, msg.enc, "processed", "AA", resources=resources_of(response), conn=conn)
