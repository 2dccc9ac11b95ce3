"""The HL7v2 worker processes (interfaces/prepare.py): what they prepare is used, and losing them loses nothing."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from interfaces.prepare import WORKER_NICE
from interfaces.service import pipeline_for
from tests.integration.interfaces.test_group_commit import oru
from tests.integration.interfaces.test_through_router import adt


@pytest.fixture
def services(tmp_path):
    from digitalfront.app import build_services
    from digitalfront.config import Settings

    svc = build_services(Settings(database_url=f"sqlite:///{tmp_path}/w.db", auth=False, hl7_workers=2))
    yield svc
    pipeline_for(svc).prepare_pool.close()


def test_prepared_work_is_used_and_the_results_are_searchable(services, monkeypatch):
    p = pipeline_for(services)
    p.prepare_pool.start()
    assert len(p.prepare_pool.pids()) == 2 and os.getpid() not in p.prepare_pool.pids()
    # they yield the CPU to the writer thread (the bottleneck) and use what it leaves
    want, deadline = {min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE)}, time.monotonic() + 30
    while {os.getpriority(os.PRIO_PROCESS, pid) for pid in p.prepare_pool.pids()} != want \
            and time.monotonic() < deadline:  # a worker that answered no call yet may still be starting
        time.sleep(0.05)
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in p.prepare_pool.pids()} == want
    # the writer must not validate or extract what the workers did: count what it still does itself
    calls = {"validate": 0, "extract": 0}
    real_validate = services.router.validate_write
    monkeypatch.setattr(services.router, "validate_write",
                        lambda *a: (calls.__setitem__("validate", calls["validate"] + 1), real_validate(*a))[1])
    # (a stand-in object: the compiled build's Extractor, a C type, takes no per-instance patches)
    monkeypatch.setattr(services.repo, "extractor", _Counting(services.repo.extractor, calls))
    results = p.ingest_batch([(oru(f"w-{i}", mrn="810"), "t", None) for i in range(4)]
                             + [(adt("A01", "w-adt", mrn="810"), "t", None)])
    assert [r.ack_code for r in results] == ["AA"] * 5
    assert calls == {"validate": 0, "extract": 0}
    assert p.stats.prepared >= 4  # (a lone message may be mapped by the writer itself)
    obs = services.client.search("Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|810")])
    assert len(obs) == 48  # four orders of 12 results
    patient = services.client.search("Patient", [("identifier", "urn:oid:1.2.3|810")])[0]
    assert len(services.client.search("Observation", [("patient", f"Patient/{patient['id']}")])) == 48
    assert len(services.client.search("Encounter", [("subject", f"Patient/{patient['id']}")])) == 1
    # the workers mapped each message before the store gave it an id: its Provenance has the id all the same
    for r in results:
        prov = services.client.search("Provenance", [("entity:identifier",
                                                       f"urn:digitalfront:hl7v2:message|{r.message_id}")])
        assert len(prov) == 1
        assert prov[0]["entity"][0]["what"]["identifier"]["value"] == str(r.message_id)
        assert sorted(f"{t['reference']}" for t in prov[0]["target"]) == sorted(r.resources[:-1])
    assert not services.client.search("Provenance", [("entity:identifier", "urn:digitalfront:hl7v2:message|0")])


def test_a_killed_worker_costs_speed_not_messages(services):
    p = pipeline_for(services)
    p.prepare_pool.start()
    os.kill(p.prepare_pool.pids()[0], signal.SIGKILL)
    time.sleep(0.5)
    results = p.ingest_batch([(oru(f"k-{i}", mrn="811"), "t", None) for i in range(3)])
    assert [r.ack_code for r in results] == ["AA"] * 3
    results = p.ingest_batch([(oru(f"k2-{i}", mrn="812"), "t", None) for i in range(3)])  # a new pool
    assert [r.ack_code for r in results] == ["AA"] * 3
    assert len(p.prepare_pool.pids()) >= 1
    assert len(services.client.search("Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|812")])) == 36


def test_a_search_parameter_added_later_is_indexed_by_new_workers(services):
    p = pipeline_for(services)
    p.prepare_pool.start()
    before = p.prepare_pool.pids()
    sp = {"resourceType": "SearchParameter", "url": "http://example.org/sp/obs-ref-high", "name": "refhigh",
          "status": "active", "code": "ref-high", "description": "Reference range high", "base": ["Observation"], "type": "quantity",
          "expression": "Observation.referenceRange.high"}
    services.client.create(sp)
    results = p.ingest_batch([(oru(f"s-{i}", mrn="813", v="95"), "t", None) for i in range(2)])
    assert [r.ack_code for r in results] == ["AA"] * 2
    assert p.prepare_pool.pids() != before  # rebuilt with the new parameter
    found = services.client.search("Observation", [("ref-high", "99"), ("subject:Patient.identifier",
                                                                         "urn:oid:1.2.3|813")])
    assert len(found) == 24


def test_a_message_a_worker_cannot_prepare_fails_alone(services):
    from interfaces.prepare import PrepareWorkerError, loads_mapped

    pool = pipeline_for(services).prepare_pool
    pool.start()
    pids = pool.pids()
    bad = pool.submit(b"this is not an HL7v2 message", 0)
    good = [pool.submit(oru(f"pw-{i}", mrn="816"), 0) for i in range(3)]  # queued behind it, on both workers
    with pytest.raises(PrepareWorkerError, match="Er7Error"):
        bad.result(timeout=60)
    for future in good:
        mapped = loads_mapped(future.result(timeout=60))
        assert mapped.bundle is not None and mapped.prepared is not None
        assert sum(e["resource"]["resourceType"] == "Observation" for e in mapped.bundle["entry"]) == 12
    assert pool.pids() == pids  # the same workers go on


def test_a_message_no_worker_finishes_in_time_is_answered_ae_and_kept_for_replay(services, monkeypatch, caplog):
    """A message that takes a worker longer than MAP_TIMEOUT_S would hold back every message after it: it is
    answered AE and kept (its worker is killed), the feed goes on, and a replay applies it."""
    from interfaces import prepare

    p = pipeline_for(services)
    p.prepare_pool.start()
    monkeypatch.setattr(prepare, "MAP_TIMEOUT_S", 0.5)  # the 4,000-result ORU takes a worker a few seconds
    items = [oru("t-slow", mrn="819", results=4000), oru("t-after-1", mrn="818"), oru("t-after-2", mrn="818")]
    results = p.ingest_batch([(m, "t", None) for m in items])
    assert [r.ack_code for r in results] == ["AE", "AA", "AA"]
    stored = p.store.get(results[0].message_id)
    assert stored is not None and stored.status == "error"
    assert "mapping did not finish within 0.5 s" in stored.outcome["error"] and stored.outcome["code"] == "207"
    assert b"did not finish" in results[0].acks[0] and b"MSA|AE|t-slow" in results[0].acks[0]
    assert "did not finish a message" in caplog.text
    assert len(services.client.search("Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|818")])) == 24
    assert not services.client.search("Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|819")])
    monkeypatch.setattr(prepare, "MAP_TIMEOUT_S", 60.0)
    assert p.replay(results[0].message_id).ack_code == "AA"  # after the fix (here: more time)
    assert p.store.get(results[0].message_id).status == "processed"
    assert len(services.client.search("Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|819"),
                                                      ("_count", "1"), ("_total", "accurate")], limit=1)) == 1
    later = p.ingest_batch([(oru(f"t-later-{i}", mrn="818"), "t", None) for i in range(2)])  # a new worker
    assert [r.ack_code for r in later] == ["AA", "AA"]


def test_a_message_whose_worker_dies_mapping_it_is_answered_ae_and_kept_for_replay(services, caplog):
    """A message that kills its worker (a native crash, the kernel's OOM killer) is not mapped again in the
    server's own process, where it could kill the server, and again at every restart: answered AE and kept.
    What was queued behind it on that worker is mapped by the writer."""
    import threading

    p = pipeline_for(services)
    p.prepare_pool.start()
    items = [oru("d-big", mrn="821", results=4000), oru("d-after-1", mrn="820"), oru("d-after-2", mrn="820")]
    results: list[Any] = []
    feed = threading.Thread(target=lambda: results.extend(p.ingest_batch([(m, "t", None) for m in items])))
    feed.start()
    # the 4,000-result ORU takes a worker seconds: kill the worker that holds it while it maps it
    gen = p.prepare_pool._generation  # (internal: which worker holds which message)
    assert gen is not None
    deadline = time.monotonic() + 30
    while not any(len(w.pending) for w in gen.workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = max(gen.workers, key=lambda w: len(w.pending))
    time.sleep(0.3)
    os.kill(busy.process.pid, signal.SIGKILL)
    feed.join(120)
    assert [r.ack_code for r in results] == ["AE", "AA", "AA"]
    stored = p.store.get(results[0].message_id)
    assert stored is not None and stored.status == "error" and stored.outcome["code"] == "207"
    assert "worker died while mapping this message (exit code -9)" in stored.outcome["error"]
    assert b"MSA|AE|d-big" in results[0].acks[0]
    assert "died while mapping a message" in caplog.text
    assert len(services.client.search("Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|820")])) == 24
    assert p.replay(results[0].message_id).ack_code == "AA"  # what killed it is gone (here: the kill itself)
    assert p.store.get(results[0].message_id).status == "processed"


def test_workers_that_die_starting_are_not_restarted_for_every_message(caplog):
    from interfaces.prepare import RETRY_S, PreparePool

    class UnreplayableRegistry:  # what a worker replays at start makes it fail there
        version = 0

        def registrations(self) -> list[dict[str, Any]]:
            return [{"resourceType": "SearchParameter"}]  # no url

    pool = PreparePool(1, UnreplayableRegistry())  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        pool.start()
        assert time.monotonic() - started < 60  # it noticed the death, not the start timeout
        assert "did not start" in caplog.text
        raw = oru("pd-1", mrn="817")
        first = pool.submit(raw, 0)  # the broken workers are replaced no sooner than RETRY_S from now
        assert first is None or first.exception(timeout=60) is not None
        assert f"for {RETRY_S:.0f} s" in caplog.text
        assert [pool.submit(raw, 0) for _ in range(20)] == [None] * 20  # the writer maps these itself
        assert pool.pids() == []
    finally:
        pool.close()


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 1), (4, 3), (32, 8)])
def test_auto_leaves_a_core_for_the_writer(monkeypatch, cores, workers):
    from interfaces.prepare import default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert default_workers() == workers


def test_a_lone_message_on_a_quiet_feed_skips_the_worker_round_trip(services):
    from interfaces.pipeline import QUIET_S

    p = pipeline_for(services)
    p.prepare_pool.start()
    time.sleep(QUIET_S * 2)
    before = p.stats.prepared
    assert p.ingest(oru("q-1", mrn="815"), "t").ack_code == "AA"
    assert p.stats.prepared == before  # the idle writer mapped it itself
    results = p.ingest_batch([(oru(f"q-b{i}", mrn="815"), "t", None) for i in range(3)])  # a burst
    assert [r.ack_code for r in results] == ["AA"] * 3
    assert p.stats.prepared == before + 3
    assert len(services.client.search("Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|815")])) == 48


def test_a_large_lone_message_still_goes_to_a_worker_for_its_deadline(services):
    from interfaces.pipeline import QUIET_MAX_BYTES, QUIET_S

    p = pipeline_for(services)
    p.prepare_pool.start()
    big = oru("q-big", mrn="814", results=1200)
    assert len(big) > QUIET_MAX_BYTES
    time.sleep(QUIET_S * 2)
    before = p.stats.prepared
    assert p.ingest(big, "t").ack_code == "AA"
    assert p.stats.prepared == before + 1  # mapped by a worker, under MAP_TIMEOUT_S, though the feed was quiet
    assert len(services.client.search("Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|814"),
                                                      ("_count", "1"), ("_total", "accurate")], limit=1)) == 1


class _Counting:
    """The repository's extractor, counting ``extract`` calls."""

    def __init__(self, real: Any, calls: dict[str, int]) -> None:
        self.real, self.calls = real, calls

    def extract(self, resource: dict) -> Any:
        self.calls["extract"] += 1
        return self.real.extract(resource)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
