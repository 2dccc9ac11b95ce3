"""Writers racing each other: conditional writes serialised by their criteria, lost races answered 409.

A conditional create or update searches and then writes. Two of them with the same criteria at once (two API
replicas, an HL7v2 listener beside them) both search before either commits, find nothing, and both create:
two Patients with one MRN. On SQLite a writer holds the database's write lock from ``BEGIN IMMEDIATE``, so a
search inside the writing transaction already sees every earlier commit. On PostgreSQL (READ COMMITTED) the
writer first takes a transaction-scoped advisory lock per (resource type, criteria): the second waits for the
first to commit, and its search, a new statement, then sees what the first created. HAPI FHIR closes the same
race with a unique index on conditional-create URLs; the lock also covers conditional updates that create.
Writes whose criteria differ but match the same resource (``identifier=a`` and ``identifier=a,b``) are not
serialised by it.

Races the database itself settles, a unique (type, id) key two creates of one new id both wrote, a deadlock
between two transactions' locks, become 409 Conflict asking the client to retry, as a version conflict does.
A request that waited longer than the configured wait (``DIGITALFRONT_DB_WAIT_S``) for the database, for
SQLite's write lock held by another process or for a free pooled connection, or found the database
unreachable, gets 503 with Retry-After: nothing the client sent was wrong, and nothing was written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fhir_server.errors import OperationOutcomeError, conflict, unavailable
from fhir_server.repository import ConditionalCriteria
from fhir_server.storage.engine import sqlite_busy

# SQLSTATEs of lost races: another transaction's unique key, a deadlock, a serialization failure
_UNIQUE_VIOLATION, _RETRYABLE = "23505", frozenset({"40P01", "40001"})
_RESOURCE_KEY = "uq_resource_type_id"
# PostgreSQL refusing work for now: shutting down or starting, too many connections, a lock_timeout expiry
_PG_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300", "55P03"})
RETRY_AFTER_S = 5


def lock_key(c: ConditionalCriteria) -> int:
    """A signed 64-bit key for ``pg_advisory_xact_lock``, the same in every process."""
    rt, params = c
    text = "\x1f".join([rt, *(f"{k}\x1e{v}" for k, v in params)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def lock_criteria(conn: Connection, all_criteria: Iterable[ConditionalCriteria], held: set[int]) -> None:
    """PostgreSQL: lock each distinct criteria until ``conn``'s transaction ends, in key order (two transactions
    that each lock their whole set in one call cannot deadlock on them; an HL7v2 group commit locks one
    message's set at a time, and a deadlock it meets fails the group, which is then applied message by
    message). ``held``: the keys this transaction holds already, not asked for again (a transaction Bundle
    locks all its entries' criteria first, then each conditional entry asks for its own: a round trip each),
    updated with the new ones."""
    keys = sorted({lock_key(c) for c in all_criteria} - held)
    if keys:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (keys,))
        held.update(keys)


def lost_race(exc: BaseException) -> OperationOutcomeError | None:
    """The 409 for a database error that means another transaction won a race; None for any other error.

    ``exc``: SQLAlchemy's wrapper, or the driver's own error (the write path's bulk inserts use its cursor)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None)
    if state in _RETRYABLE:
        return conflict("The write conflicted with a concurrent transaction; retry")
    if state == _UNIQUE_VIOLATION and getattr(getattr(orig, "diag", None), "constraint_name", None) == _RESOURCE_KEY:
        return conflict("The resource was created by a concurrent request; retry (it now exists)")
    return None


def failure_outcome(exc: BaseException) -> OperationOutcomeError | None:
    """The answer for a storage error a client can meet through no fault of its own (``lost_race``,
    ``unavailable_outcome``); None for any other error (a bug)."""
    return lost_race(exc) or unavailable_outcome(exc)


def unavailable_outcome(exc: BaseException) -> OperationOutcomeError | None:
    """The 503 for a database that is busy past the wait or unreachable; None for any other error (a bug)."""
    if isinstance(exc, PoolTimeout):
        return unavailable("The server is busy: no database connection came free in time; retry", RETRY_AFTER_S)
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if sqlite_busy(orig):
        return unavailable("The database is busy with another writer; retry", RETRY_AFTER_S)
    if isinstance(orig, psycopg.OperationalError):
        state = orig.sqlstate
        if state is None or state.startswith("08") or state in _PG_UNAVAILABLE:  # None: no connection at all
            return unavailable("The database is unavailable; retry", RETRY_AFTER_S)
    return None
