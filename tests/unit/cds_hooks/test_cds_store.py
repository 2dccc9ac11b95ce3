"""Feedback and jti tables on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import create_engine

from cds_hooks.errors import CdsError
from cds_hooks.store import CdsStore


@pytest.mark.postgres
def test_store_on_sqlite_and_postgresql(db_url: Any) -> None:
    store = CdsStore(create_engine(db_url))
    CdsStore(store.engine)  # idempotent create
    exp = int(time.time()) + 60
    assert store.first_use("iss", "j1", exp) and not store.first_use("iss", "j1", exp)
    assert store.first_use("other-iss", "j1", exp)
    store.add_feedback("a", {"feedback": [
        {"card": "1", "outcome": "accepted", "outcomeTimestamp": "2026-11-28T10:00:00Z"},
        {"card": "2", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00+01:00",
         "overrideReason": {"reason": {"code": "x"}, "userComment": "c"}}]}, "iss")
    assert store.feedback_counts() == {"a": {"accepted": 1, "overridden": 1}}
    with pytest.raises(CdsError):
        store.add_feedback("a", {"feedback": [{"card": "3", "outcome": "overridden",
                                               "acceptedSuggestions": [{"id": "s"}],
                                               "outcomeTimestamp": "2026-11-28T10:00:00Z"}]}, None)
    assert store.feedback_counts("a")["a"]["overridden"] == 1
    with pytest.raises(CdsError):  # PostgreSQL cannot store a NUL in text: a 500 before the check
        store.add_feedback("a", {"feedback": [{"card": "4\x00", "outcome": "accepted",
                                               "outcomeTimestamp": "2026-11-28T10:00:00Z"}]}, None)
    assert store.feedback_counts("a")["a"]["accepted"] == 1
