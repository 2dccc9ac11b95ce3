"""The durable HL7v2 message store (one table, SQLite and PostgreSQL).

Every inbound message is inserted and committed here before any processing,
so an acknowledged message can always be found, and a failed one replayed.
The dedup key is (MSH-3, MSH-4, MSH-10); see docs/hl7v2.md for the rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    Text,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from fhir_server.storage.engine import create_tables, driver_execute, param_mark

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """An instant, always bound and returned in UTC.

    SQLite keeps no offset: a bound ``17:50+01:00`` would be compared as the text ``17:50`` against UTC
    times, so every value is converted to UTC on the way in (a naive one is taken as UTC) and tagged UTC
    on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


STATUSES = ("received", "processed", "error", "rejected", "duplicate")
MAX_ID = 2**63 - 1  # the message store's ids are BIGINT / SQLite INTEGER

messages = Table(
    "hl7v2_message",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("processed_at", UtcDateTime),
    Column("source", String(200), nullable=False, default=""),
    Column("sending_application", String(200), nullable=False, default=""),
    Column("sending_facility", String(200), nullable=False, default=""),
    Column("receiving_application", String(200), nullable=False, default=""),
    Column("receiving_facility", String(200), nullable=False, default=""),
    Column("control_id", String(200), nullable=False, default=""),
    Column("message_type", String(40), nullable=False, default=""),
    Column("structure", String(20), nullable=False, default=""),
    Column("version", String(10), nullable=False, default=""),
    Column("message_datetime", String(40), nullable=False, default=""),
    Column("patient_key", String(300), nullable=False, default=""),
    Column("raw", LargeBinary, nullable=False),
    Column("status", String(12), nullable=False),
    Column("ack_code", String(2)),
    Column("ack", LargeBinary),
    Column("outcome", Text),
    Column("resources", Text),
    Column("duplicate_of", Integer),
    Column("attempts", Integer, nullable=False, default=0),
)
Index("ix_hl7v2_message_key", messages.c.sending_application, messages.c.sending_facility, messages.c.control_id)
Index("ix_hl7v2_message_status", messages.c.status, messages.c.id)
Index("ix_hl7v2_message_received", messages.c.received_at)
Index("ix_hl7v2_message_patient", messages.c.patient_key, messages.c.id)


def _json_load(text: str | None) -> Any:
    return json.loads(text) if text else None


@dataclass
class StoredMessage:
    id: int
    received_at: datetime
    processed_at: datetime | None
    source: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str
    message_type: str
    structure: str
    version: str
    message_datetime: str
    patient_key: str
    raw: bytes
    status: str
    ack_code: str | None
    ack: bytes | None
    outcome: Any
    resources: list[str]
    duplicate_of: int | None
    attempts: int

    def summary(self, base_url: str = "") -> dict[str, Any]:
        """JSON view for GET /hl7v2/messages (raw text included, resources as links)."""
        return {
            "id": self.id,
            "receivedAt": self.received_at.isoformat(),
            "processedAt": self.processed_at.isoformat() if self.processed_at else None,
            "source": self.source,
            "sendingApplication": self.sending_application,
            "sendingFacility": self.sending_facility,
            "controlId": self.control_id,
            "patientId": self.patient_key,
            "messageType": self.message_type,
            "structure": self.structure,
            "version": self.version,
            "status": self.status,
            "ackCode": self.ack_code,
            "outcome": self.outcome,
            "duplicateOf": self.duplicate_of,
            "attempts": self.attempts,
            "resources": [{"reference": r, "url": f"{base_url}/{r}" if base_url else r} for r in self.resources],
        }


def _row(r: Any) -> StoredMessage:
    m = r._mapping
    return StoredMessage(
        id=m["id"],
        received_at=m["received_at"],
        processed_at=m["processed_at"],
        source=m["source"],
        sending_application=m["sending_application"],
        sending_facility=m["sending_facility"],
        receiving_application=m["receiving_application"],
        receiving_facility=m["receiving_facility"],
        control_id=m["control_id"],
        message_type=m["message_type"],
        structure=m["structure"],
        version=m["version"],
        message_datetime=m["message_datetime"],
        patient_key=m["patient_key"],
        raw=bytes(m["raw"]),
        status=m["status"],
        ack_code=m["ack_code"],
        ack=bytes(m["ack"]) if m["ack"] is not None else None,
        outcome=_json_load(m["outcome"]),
        resources=_json_load(m["resources"]) or [],
        duplicate_of=m["duplicate_of"],
        attempts=m["attempts"],
    )


# The statements of every message, built once (building them per call cost more than running them).
_INSERT = messages.insert()
_FIND_ORIGINAL = (
    select(messages)
    .where(messages.c.sending_application == bindparam("app"), messages.c.sending_facility == bindparam("fac"),
           messages.c.control_id == bindparam("cid"), messages.c.status != "duplicate")
    .order_by(messages.c.id)
    .limit(1)
)


@lru_cache(maxsize=4)
def _finish_sql(dialect: Dialect) -> tuple[str, Callable[[datetime], Any]]:
    """The finishing UPDATE of every message as driver SQL, and how its timestamp is bound (the column type's
    own conversion): through SQLAlchemy's execution context it cost the writer thread ~0.1 ms per message,
    more than SQLite running it (bench/RESULTS.md)."""
    mark = param_mark(dialect.name == "sqlite")
    sql = (f"UPDATE {messages.name} SET status = {mark}, ack_code = {mark}, ack = {mark}, processed_at = {mark}, "
           f"outcome = {mark}, resources = {mark}, attempts = attempts + 1 WHERE id = {mark}")
    bind = messages.c.processed_at.type.bind_processor(dialect)
    return sql, bind if bind is not None else (lambda value: value)


def _in_window(q: Select[Any], status: str | None, since: datetime | None, until: datetime | None,
               ids: list[int] | None) -> Select[Any]:
    """The filters the message list and replay share: status, a received-at window, ids."""
    if status:
        q = q.where(messages.c.status == status)
    if since:
        q = q.where(messages.c.received_at >= since)
    if until:
        q = q.where(messages.c.received_at < until)
    if ids is not None:
        q = q.where(messages.c.id.in_(ids))
    return q


class MessageStore:
    def __init__(self, engine: Engine, write_engine: Engine | None = None) -> None:
        """``write_engine``: where write transactions go, when the FHIR repository has its own for the same
        database (SQLite: one writer connection whose page cache stays warm, ``SqlFhirRepository.write_engine``)."""
        self.engine = engine
        self.write_engine = write_engine or engine
        create_tables(engine, metadata)

    def insert(
        self,
        raw: bytes,
        *,
        source: str,
        status: str,
        header: Any = None,
        ack_code: str | None = None,
        ack: bytes | None = None,
        outcome: Any = None,
        duplicate_of: int | None = None,
        conn: Connection | None = None,
    ) -> int:
        values: dict[str, Any] = {
            "received_at": datetime.now(UTC),
            "source": source[:200],
            "raw": raw,
            "status": status,
            "ack_code": ack_code,
            "ack": ack,
            "outcome": json.dumps(outcome) if outcome is not None else None,
            "duplicate_of": duplicate_of,
            "attempts": 0,
        }
        h = header
        values.update(
            sending_application=h.sending_application[:200] if h else "",
            sending_facility=h.sending_facility[:200] if h else "",
            receiving_application=h.receiving_application[:200] if h else "",
            receiving_facility=h.receiving_facility[:200] if h else "",
            control_id=h.control_id[:200] if h else "",
            message_type=h.message_type[:40] if h else "",
            structure=h.structure[:20] if h else "",
            version=h.version[:10] if h else "",
            message_datetime=h.message_datetime[:40] if h else "",
            patient_key=h.patient_id[:300] if h else "",
            processed_at=values["received_at"] if status != "received" else None,
        )
        with self._writing(conn) as c:  # one statement object for every message: compiled once
            res = c.execute(_INSERT, values)
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    @contextmanager
    def _writing(self, conn: Connection | None) -> Iterator[Connection]:
        """``conn`` when the caller holds a transaction (group commit), else a transaction of our own."""
        if conn is not None:
            yield conn
            return
        with self.write_engine.begin() as own:
            yield own

    def find_original(
        self, sending_application: str, sending_facility: str, control_id: str, conn: Connection | None = None
    ) -> StoredMessage | None:
        """The first non-duplicate copy of a (MSH-3, MSH-4, MSH-10) key, if any."""
        if not control_id:
            return None
        key = {"app": sending_application[:200], "fac": sending_facility[:200], "cid": control_id[:200]}
        if conn is not None:
            r = conn.execute(_FIND_ORIGINAL, key).first()
        else:
            with self.engine.connect() as own:
                r = own.execute(_FIND_ORIGINAL, key).first()
        return _row(r) if r is not None else None

    def finish(
        self,
        msg_id: int,
        *,
        status: str,
        ack_code: str | None,
        ack: bytes | None,
        outcome: Any = None,
        resources: list[str] | None = None,
        conn: Connection | None = None,
    ) -> None:
        with self._writing(conn) as c:
            sql, stamp = _finish_sql(c.dialect)
            driver_execute(c, sql, (status, ack_code, ack, stamp(datetime.now(UTC)),
                                    json.dumps(outcome) if outcome is not None else None,
                                    json.dumps(resources) if resources is not None else None, msg_id))

    def get(self, msg_id: int) -> StoredMessage | None:
        if not 0 < msg_id <= MAX_ID:  # ids are 64-bit: a larger one would fail in the driver, not just not match
            return None
        with self.engine.connect() as conn:
            r = conn.execute(select(messages).where(messages.c.id == msg_id)).first()
        return _row(r) if r is not None else None

    def search(
        self,
        *,
        status: str | None = None,
        message_type: str | None = None,
        sender: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        ids: list[int] | None = None,
        control_id: str | None = None,
        patient: str | None = None,
        contains: bytes | None = None,
        limit: int = 100,
        offset: int = 0,
        order_desc: bool = True,
    ) -> list[StoredMessage]:
        """``contains``: bytes anywhere in the raw message (an MRN, an order number), exact case; a scan of the
        messages the other filters leave, like an interface engine's content search."""
        q = _in_window(select(messages), status, since, until, ids)
        if message_type:
            q = q.where(messages.c.message_type.startswith(message_type.upper(), autoescape=True))
        if sender:
            q = q.where((messages.c.sending_application == sender) | (messages.c.sending_facility == sender))
        if control_id:
            q = q.where(messages.c.control_id == control_id)
        if patient:
            q = q.where(messages.c.patient_key == patient)
        if contains:
            needle = bindparam("needle", contains, type_=LargeBinary)
            q = q.where(func.instr(messages.c.raw, needle) > 0 if self.engine.dialect.name == "sqlite"
                        else text("position(CAST(:needle AS bytea) IN hl7v2_message.raw) > 0").bindparams(needle))
        q = q.order_by(messages.c.id.desc() if order_desc else messages.c.id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def iter_ids(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        ids: list[int] | None = None,
    ) -> Iterator[int]:
        """Ids in arrival order, for replay (arrival order keeps per-patient order)."""
        q = _in_window(select(messages.c.id).where(messages.c.status != "duplicate"), status, since, until, ids)
        with self.engine.connect() as conn:
            found = [int(r[0]) for r in conn.execute(q.order_by(messages.c.id))]
        yield from found

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(messages.c.status, func.count()).group_by(messages.c.status)).all()
        out = dict.fromkeys(STATUSES, 0)
        out.update({str(s): int(n) for s, n in rows})
        return out
