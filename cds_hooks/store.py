"""Our own tables: card feedback and seen JWT ids (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from cds_hooks.errors import bad_request
from fhir_server.storage.engine import create_tables
from fhir_server.validation.primitives import has_control_characters

metadata = MetaData()

feedback_table = Table(
    "cds_feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(128), nullable=False),
    Column("card_uuid", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("accepted_suggestions", Text, nullable=True),
    Column("override_code", String(128), nullable=True),
    Column("override_comment", Text, nullable=True),
    Column("outcome_timestamp", String(40), nullable=False),
    Column("client_iss", String(512), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
Index("ix_cds_feedback_service", feedback_table.c.service_id, feedback_table.c.outcome)

jti_table = Table(
    "cds_jwt_jti", metadata,
    Column("iss", String(512), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("exp", BigInteger, nullable=False),
)

OUTCOMES = ("accepted", "overridden")


class CdsStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine, metadata)
        self._last_prune = 0.0

    # ------------------------------------------------------------ jti replay
    def first_use(self, iss: str, jti: str, exp: int) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(jti_table).values(iss=iss, jti=jti, exp=exp))
        except IntegrityError:
            return False
        if time.monotonic() - self._last_prune > 300:
            self._last_prune = time.monotonic()
            with self.engine.begin() as conn:
                conn.execute(delete(jti_table).where(jti_table.c.exp < int(time.time()) - 3600))
        return True

    # ------------------------------------------------------------ feedback
    def add_feedback(self, service_id: str, body: Any, client_iss: str | None) -> int:
        """Validate and store a feedback request (CDS Hooks 2.0 §Feedback); returns rows stored."""
        if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
            raise bad_request("feedback must be an object with a non-empty feedback array")
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        for i, fb in enumerate(body["feedback"]):
            p = f"feedback[{i}]"
            if not isinstance(fb, dict):
                problems.append(f"{p} must be an object")
                continue
            if has_control_characters(fb):
                problems.append(f"{p} must not contain control characters")
            if not isinstance(fb.get("card"), str) or not fb.get("card"):
                problems.append(f"{p}.card (the card uuid) is required")
            outcome = fb.get("outcome")
            if outcome not in OUTCOMES:
                problems.append(f"{p}.outcome must be accepted or overridden")
            ts = fb.get("outcomeTimestamp")
            if not isinstance(ts, str):
                problems.append(f"{p}.outcomeTimestamp is required")
            else:
                try:
                    datetime.fromisoformat(ts.replace("Z", "+00:00"))
                except ValueError:
                    problems.append(f"{p}.outcomeTimestamp is not an ISO 8601 instant")
            accepted = fb.get("acceptedSuggestions")
            if outcome == "accepted" and accepted is not None and (
                    not isinstance(accepted, list)
                    or not all(isinstance(a, dict) and a.get("id") for a in accepted)):
                problems.append(f"{p}.acceptedSuggestions must be [{{id}}]")
            if outcome == "overridden" and accepted:
                problems.append(f"{p}.acceptedSuggestions is not allowed when overridden")
            raw_reason = fb.get("overrideReason")
            reason: dict[str, Any] = raw_reason if isinstance(raw_reason, dict) else {}
            raw_coding = reason.get("reason")
            coding: dict[str, Any] = raw_coding if isinstance(raw_coding, dict) else {}
            rows.append({
                "service_id": service_id, "card_uuid": str(fb.get("card")), "outcome": str(outcome),
                "accepted_suggestions": json.dumps(accepted) if accepted else None,
                "override_code": coding.get("code"), "override_comment": reason.get("userComment"),
                "outcome_timestamp": str(ts), "client_iss": client_iss,
                "received_at": datetime.now(UTC),
            })
        if problems:
            raise bad_request("invalid feedback", problems)
        with self.engine.begin() as conn:
            conn.execute(insert(feedback_table), rows)
        return len(rows)

    def feedback_counts(self, service_id: str | None = None) -> dict[str, dict[str, int]]:
        """{service_id: {"accepted": n, "overridden": m}}."""
        q = select(feedback_table.c.service_id, feedback_table.c.outcome, func.count()).group_by(
            feedback_table.c.service_id, feedback_table.c.outcome)
        if service_id is not None:
            q = q.where(feedback_table.c.service_id == service_id)
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for sid, outcome, n in conn.execute(q):
                out.setdefault(sid, {o: 0 for o in OUTCOMES})[outcome] = int(n)
        return out
