"""Two HL7v2 pipelines (two listener pods, or one beside API replicas) on one database, admitting the same new
patient at the same moment: one Patient and one Encounter, both messages AA.

The race is forced as in tests/integration/fhir_server/test_concurrent_writes.py: the first writer's Patient
lookup waits for the second's. Before the criteria locks, on PostgreSQL both pipelines' transactions found
no patient and each created one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from fhir_server.storage.repository import SqlFhirRepository
from interfaces.fhir_write import router_transaction
from interfaces.pipeline import Hl7Pipeline
from interfaces.service import pipeline_for
from interfaces.store import MessageStore
from tests.integration.fhir_server.test_concurrent_writes import LookupRace, race
from tests.integration.interfaces.test_through_router import adt


def test_two_pipelines_admitting_one_new_patient_make_one_record(services_factory: Any, db_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pods = [services_factory(database_url=db_url, hl7_workers=0) for _ in range(2)]
    pipelines = [pipeline_for(s) for s in pods]
    lookup = LookupRace(monkeypatch, "search", "Patient")
    try:
        first, second = race(lambda: pipelines[0].ingest(adt("A04", "pod-a-1", mrn="9001", family="Admitted"), "a"),
                             lambda: pipelines[1].ingest(adt("A04", "pod-b-1", mrn="9001", family="Admitted"), "b"))
    finally:
        for p in pipelines:
            p.close()
    assert not lookup.overlapped and lookup.first is not None
    assert (first.ack_code, second.ack_code) == ("AA", "AA"), (first, second)
    patients = pods[0].client.search("Patient", [("identifier", "urn:oid:1.2.3|9001")])
    assert len(patients) == 1
    encounters = pods[1].client.search("Encounter", [("subject", f"Patient/{patients[0]['id']}")])
    assert len(encounters) == 1  # one visit number: the second message updated the first's Encounter


def test_two_pipelines_whose_groups_lock_two_patients_in_opposite_orders(
        services_factory: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real deadlock between two group commits (PostgreSQL; on SQLite one group holds the write lock, so no
    cycle can form). Pod A's group updates patient 7001 then 7002, pod B's 7002 then 7001; each holds its first
    patient's criteria lock when it asks for the second. PostgreSQL cancels one transaction; that group is
    applied again message by message, so every message ends AA and none waits for a replay."""
    pods = [services_factory(database_url=pg_url, hl7_workers=0) for _ in range(2)]
    pipelines = [pipeline_for(s) for s in pods]
    both_hold_one = threading.Barrier(2, timeout=5)
    passed: set[int] = set()
    original = SqlFhirRepository.lock_criteria

    def lock_then_wait_for_the_other(repo: SqlFhirRepository, criteria: Any) -> None:
        original(repo, criteria)
        if threading.get_ident() not in passed:  # each writer thread's first lock only
            passed.add(threading.get_ident())
            both_hold_one.wait()

    monkeypatch.setattr(SqlFhirRepository, "lock_criteria", lock_then_wait_for_the_other)
    try:
        a, b = race(
            lambda: pipelines[0].ingest_batch([(adt("A08", "a-1", mrn="7001", family="First"), "a", None),
                                               (adt("A08", "a-2", mrn="7002", family="Second"), "a", None)]),
            lambda: pipelines[1].ingest_batch([(adt("A08", "b-1", mrn="7002", family="Second"), "b", None),
                                               (adt("A08", "b-2", mrn="7001", family="First"), "b", None)]))
    finally:
        for p in pipelines:
            p.close()
    assert not both_hold_one.broken  # the cycle formed: each held one patient's lock
    assert [r.ack_code for r in (*a, *b)] == ["AA"] * 4, (a, b)
    for mrn in ("7001", "7002"):
        assert len(pods[0].client.search("Patient", [("identifier", f"urn:oid:1.2.3|{mrn}")])) == 1


def _lock_waits(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE NOT granted").scalar() or 0)


def test_a_message_applied_alone_that_loses_a_deadlock_is_applied_again(
        services_factory: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pod A's group updates patient OLD (holding its row until the group commits), then asks for patient NEW's
    criteria lock. Pod B, applying one message per transaction, merges OLD into NEW (A40): it holds NEW's lock
    and waits for OLD's row. PostgreSQL cancels B, the first to wait; B applies the merge again once A has
    committed, and answers AA instead of AE (which would have left the merge waiting for a replay)."""
    pod_a, pod_b = (services_factory(database_url=pg_url, hl7_workers=0) for _ in range(2))
    a = pipeline_for(pod_a)
    b = Hl7Pipeline(MessageStore(pod_b.engine), router_transaction(pod_b.router))  # no group commit
    for cid, mrn in (("p-1", "OLD"), ("p-2", "NEW")):
        assert a.ingest(adt("A01", cid, mrn=mrn), "setup").ack_code == "AA"
    a_holds_old = threading.Event()
    calls: dict[int, int] = {}
    original = SqlFhirRepository.lock_criteria

    def second_lock_after_b_waits(repo: SqlFhirRepository, criteria: Any) -> None:
        me = threading.get_ident()
        calls[me] = calls.get(me, 0) + 1
        if calls[me] == 2 and len(calls) == 1:  # pod A's writer, at its group's second message
            a_holds_old.set()
            deadline = time.monotonic() + 10
            while _lock_waits(pod_a.engine) == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
        original(repo, criteria)

    monkeypatch.setattr(SqlFhirRepository, "lock_criteria", second_lock_after_b_waits)
    merge = (b"MSH|^~\\&|ADM|HOSP|DF|DF|20240103||ADT^A40^ADT_A39|b-1|P|2.5.1\r"
             b"PID|1||NEW^^^HOSP&1.2.3&ISO^MR||Doe^Jane\rMRG|OLD^^^HOSP&1.2.3&ISO^MR\r")
    try:
        group = threading.Thread(target=lambda: results.extend(a.ingest_batch(
            [(adt("A08", "a-1", mrn="OLD", family="Updated"), "a", None),
             (adt("A08", "a-2", mrn="NEW", family="Updated"), "a", None)])))
        results: list[Any] = []
        group.start()
        assert a_holds_old.wait(10)
        merged = b.ingest(merge, "b")
        group.join(60)
    finally:
        a.close()
        b.close()
    assert [r.ack_code for r in results] == ["AA", "AA"], results
    assert merged.ack_code == "AA", b.store.get(merged.message_id).outcome
    old = pod_a.client.search("Patient", [("identifier", "urn:oid:1.2.3|OLD")])[0]
    assert old["active"] is False and old["link"][0]["type"] == "replaced-by"
    assert old["name"][0]["family"] == "Updated"  # A's update, then B's merge: neither lost
