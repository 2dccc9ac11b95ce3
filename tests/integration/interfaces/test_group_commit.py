"""Group commit through the real router and storage: one transaction, one savepoint per message."""

from __future__ import annotations

import threading

import pytest

from interfaces.client import MllpClient, ack_code
from interfaces.mllp import start_pipeline_listener
from interfaces.service import pipeline_for
from tests.integration.interfaces.test_through_router import adt, services  # noqa: F401 - fixture


def oru(cid: str, mrn: str = "700", v: str = "95", results: int = 12) -> bytes:
    """An ORU^R01 of one order with ``results`` numeric OBX, all valued ``v``."""
    return (f"MSH|^~\\&|LAB|HOSP|DF|DF|20240101120000||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
            f"PID|1||{mrn}^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19800101|F\r"
            f"OBR|1|P{cid}^LAB|F{cid}^LAB|24323-8^Panel^LN|||20240101110000||||||||||||||||F\r"
            + "".join(f"OBX|{n}|NM|2345-{n}^Analyte {n}^LN||{v}|mg/dL^mg/dL^UCUM|70-99|N|||F\r"
                      for n in range(1, results + 1))).encode()


def services_metrics(services) -> str:  # noqa: F811
    from interfaces.monitor import pipeline_metrics

    return pipeline_metrics(pipeline_for(services))


def count(services, rtype: str, params: list[tuple[str, str]]) -> int:  # noqa: F811
    return len(services.client.search(rtype, params))


def test_bad_message_in_a_group_does_not_affect_the_others(services):  # noqa: F811
    p = pipeline_for(services)
    assert p.group is not None
    bad = adt("A01", "g-bad", mrn="901").replace(b"|19800101|", b"|1980-01-01|")  # AE: PID-7 unparsable
    # rejected by the FHIR core inside the group, after its Patient entry: two Encounters already carry its
    # visit number (PV1-19), so the conditional update of the Encounter cannot tell which to update (412)
    for _ in range(2):
        services.client.create({"resourceType": "Encounter", "status": "finished", "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "identifier": [{"system": "urn:oid:1.2.3", "value": "V902"}]})
    fhir_bad = adt("A01", "g-fbad", mrn="902")
    items = [adt("A01", "g-1", mrn="900"), bad, fhir_bad, oru("g-2", mrn="900"), b"garbage", adt("A08", "g-3", mrn="900")]
    results = p.ingest_batch([(m, "t", None) for m in items])
    codes = [r.ack_code for r in results]
    assert codes == ["AA", "AE", "AE", "AA", "AR", "AA"]
    statuses = [p.store.get(r.message_id).status for r in results]
    assert statuses == ["processed", "error", "error", "processed", "rejected", "processed"]
    fhir_outcome = p.store.get(results[2].message_id).outcome
    assert fhir_outcome["status"] == 412  # the core's OperationOutcome is kept
    assert "Bundle.entry[1]: Conditional update: criteria matched more than one resource" in fhir_outcome["error"]
    assert count(services, "Patient", [("identifier", "urn:oid:1.2.3|900")]) == 1
    assert count(services, "Patient", [("identifier", "urn:oid:1.2.3|901")]) == 0
    assert count(services, "Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|900")]) == 12
    # the message the core rejected left nothing behind, not even the Patient its bundle created first
    assert count(services, "Patient", [("identifier", "urn:oid:1.2.3|902")]) == 0
    for r in results:
        stored = p.store.get(r.message_id)
        assert stored.ack is not None and ack_code(stored.ack) == r.ack_code


def test_same_control_id_twice_in_one_group_is_a_duplicate_and_resend_updates(services):  # noqa: F811
    p = pipeline_for(services)
    first, again = p.ingest_batch([(oru("g-dup", v="95"), "t", None), (oru("g-dup", v="96"), "t", None)])
    assert first.status == "processed" and again.status == "duplicate" and again.duplicate_of == first.message_id
    assert again.acks == [p.store.get(first.message_id).ack]
    # a re-send under a new control id updates the same 12 Observations (deterministic ids), no copies
    p.ingest_batch([(oru("g-dup", v="97").replace(b"|g-dup|P|", b"|g-dup2|P|"), "t", None)])
    obs = services.client.search("Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|700")])
    assert len(obs) == 12 and {o["valueQuantity"]["value"] for o in obs} == {97}


def test_concurrent_connections_share_group_commits_in_order(services):  # noqa: F811
    p = pipeline_for(services)
    handle = start_pipeline_listener(p, "127.0.0.1", 0)
    errors: list[str] = []

    def sender(k: int) -> None:
        with MllpClient("127.0.0.1", handle.port, timeout=60) as c:
            for i in range(6):  # per patient k: A01 then updates, in order
                family = f"Fam{k}v{i}"
                ack = c.send(adt("A01" if i == 0 else "A08", f"c{k}-{i}", mrn=f"8{k}", family=family))[0]
                if ack_code(ack) != "AA":
                    errors.append(ack.decode(errors="replace"))

    try:
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        handle.stop()
    assert not errors
    assert p.stats.applied == 24 and p.stats.largest_group > 1  # some messages shared a commit
    metrics = services_metrics(services)
    assert "digitalfront_hl7v2_applied_total 24" in metrics
    for k in range(4):
        (pat,) = services.client.search("Patient", [("identifier", f"urn:oid:1.2.3|8{k}")])
        assert pat["name"][0]["family"] == f"Fam{k}v5"  # the last update won: order kept per patient


def _behind_a_full_group(p, later):  # noqa: ANN001, ANN202
    """Submit 66 messages, and ``later`` from the writer thread as soon as the first 66 are stored: the writer
    then applies 64 (MAX_GROUP) and ``later`` arrives meanwhile, so the commit of that group stores them;
    the next turn applies 65, 66 and them."""
    fired: list = []

    def on_commit(_ack: bytes) -> None:
        if not fired:
            fired.extend(p.submit([(m, "t", None) for m in later]))

    first = [(oru(f"h-{i}", mrn="930").replace(b"|P|2.5.1\r", b"|P|2.5.1|||AL|NE\r", 1) if i == 0
              else oru(f"h-{i}", mrn="930"), "t", on_commit if i == 0 else None) for i in range(66)]
    results = [f.result(timeout=300) for f in p.submit(first)]
    return results, [f.result(timeout=300) for f in fired]


# Without workers every stored message is ready at once, so which turn merges is deterministic; with workers
# the same code runs whenever a prepared head meets new arrivals (counted in the MLLP benchmark).
@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
def test_arrivals_are_stored_by_the_commit_of_the_group_being_applied(services):  # noqa: F811
    p = pipeline_for(services)
    resend = oru("h-65", mrn="930")  # a re-send of message 66, which the same transaction applies
    first, later = _behind_a_full_group(p, [oru("h-late-1", mrn="931"), resend, oru("h-late-2", mrn="931")])
    assert [r.ack_code for r in first] == ["AA"] * 66
    assert p.stats.stored_with_group == 3
    assert "digitalfront_hl7v2_stored_with_group_total 3" in services_metrics(services)
    assert [r.status for r in later] == ["processed", "duplicate", "processed"]
    assert later[1].duplicate_of == first[65].message_id and later[1].acks == [p.store.get(first[65].message_id).ack]
    assert count(services, "Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|931")]) == 24
    for r in later:
        assert p.store.get(r.message_id).ack is not None


@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
def test_a_message_arriving_while_a_group_is_applied_is_stored_by_that_groups_commit(services, monkeypatch):  # noqa: F811
    from contextlib import contextmanager

    p = pipeline_for(services)
    real = p.group.transaction
    late: list = []
    stored_at_first_commit: list = []

    @contextmanager
    def arriving_meanwhile():  # noqa: ANN202 - a sender's next message arrives while the first group is applied
        first = not late
        if first:
            late.extend(p.submit([(oru("m-late", mrn="935"), "t", None)]))
        with real() as tx:
            yield tx
        if first:  # committed: was the late message stored by this commit?
            stored_at_first_commit.append(p.store.find_original("LAB", "HOSP", "m-late"))

    monkeypatch.setattr(p.group, "transaction", arriving_meanwhile)
    first = p.ingest_batch([(oru(f"m-{i}", mrn="935"), "t", None) for i in range(3)])
    assert [r.ack_code for r in first] == ["AA"] * 3
    assert stored_at_first_commit[0] is not None and stored_at_first_commit[0].status == "received"
    assert late[0].result(timeout=60).ack_code == "AA"  # and applied by the next turn
    assert count(services, "Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|935")]) == 48


@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
def test_a_failed_group_commit_still_stores_and_applies_the_arrivals(services, monkeypatch):  # noqa: F811
    from contextlib import contextmanager

    p = pipeline_for(services)
    real = p.group.transaction
    failures: list[int] = []

    @contextmanager
    def failing_once():  # noqa: ANN202 - the commit of the first group fails (a full disk, a lost connection)
        with real() as tx:
            yield tx
            if not failures and p.stats.applied == 0:
                failures.append(1)
                raise RuntimeError("commit failed")

    monkeypatch.setattr(p.group, "transaction", failing_once)
    first, later = _behind_a_full_group(p, [oru("h-f-1", mrn="932"), oru("h-f-2", mrn="932")])
    assert failures == [1]
    assert [r.ack_code for r in first] == ["AA"] * 66 and [r.ack_code for r in later] == ["AA", "AA"]
    assert p.stats.stored_with_group == 0  # stored by a commit of their own after the failure
    assert len({r.message_id for r in first + later}) == 68
    assert count(services, "Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|932")]) == 24


@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
def test_a_message_whose_final_write_fails_part_way_rolls_the_group_back_and_nothing_is_lost(
        services, monkeypatch):  # noqa: F811
    p = pipeline_for(services)
    repo_type = type(services.repo)
    real = repo_type._insert_sql
    failed: list[str] = []

    def once(self, kind):  # noqa: ANN001, ANN202 - the first quantity rows of the run cannot be written
        if kind == "quantity" and not failed:
            failed.append(kind)
            return "INSERT INTO no_such_table VALUES (1)"
        return real(self, kind)

    monkeypatch.setattr(repo_type, "_insert_sql", once)
    items = [adt("A01", "pw-1", mrn="940"), oru("pw-2", mrn="940"), oru("pw-3", mrn="941")]
    results = p.ingest_batch([(m, "t", None) for m in items])
    assert failed == ["quantity"]
    assert [r.ack_code for r in results] == ["AA", "AA", "AA"]  # applied again, one per transaction
    assert count(services, "Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|940")]) == 12
    assert count(services, "Observation", [("subject:Patient.identifier", "urn:oid:1.2.3|941")]) == 12
    assert count(services, "Patient", [("identifier", "urn:oid:1.2.3|940")]) == 1


def test_a_nul_byte_is_rejected_with_the_control_id_and_stored_as_sent(services):  # noqa: F811
    """On PostgreSQL a NUL in MSH-10 reached the store's text columns: the writer's commit failed, and every
    message that arrived with it lost its ACK (none was stored)."""
    p = pipeline_for(services)
    nul = adt("A01", "g-n\x00ul", mrn="940").replace(b"Doe", b"D\x00oe")
    items = [adt("A01", "g-n-1", mrn="941"), nul, adt("A08", "g-n-2", mrn="941")]
    results = p.ingest_batch([(m, "t", None) for m in items])
    assert [r.ack_code for r in results] == ["AA", "AR", "AA"]
    ack = results[1].acks[0].decode()
    assert "MSA|AR|g-nul|" in ack and "NUL byte" in ack
    stored = p.store.get(results[1].message_id)
    assert stored.status == "rejected" and stored.raw == nul  # the bytes as they arrived
    assert p.replay(results[1].message_id).ack_code == "AR"  # and a replay rejects it the same way
    assert count(services, "Patient", [("identifier", "urn:oid:1.2.3|940")]) == 0


def test_a_message_the_store_cannot_take_fails_alone(services, monkeypatch):  # noqa: F811
    """Storing the arrivals of a turn is one commit; when it fails, each is stored on its own, so only the
    message the store refuses goes without an ACK."""
    p = pipeline_for(services)
    real = p.store.insert

    def refusing(raw: bytes, **kw):  # noqa: ANN003, ANN202 - e.g. a value the database refuses
        if b"g-s-bad" in raw:
            raise RuntimeError("the database refused this row")
        return real(raw, **kw)

    monkeypatch.setattr(p.store, "insert", refusing)
    futures = p.submit([(adt("A01", c, mrn="950"), "t", None) for c in ("g-s-1", "g-s-bad", "g-s-2")])
    assert futures[0].result(60).ack_code == "AA" and futures[2].result(60).ack_code == "AA"
    with pytest.raises(RuntimeError, match="refused"):
        futures[1].result(60)
    assert [p.store.get(f.result().message_id).status for f in (futures[0], futures[2])] == ["processed"] * 2


def test_control_characters_in_text_map_to_spaces_not_an_error(services):  # noqa: F811
    """FHIR strings may not hold them (the validator refuses them); a stray form feed in a feed is common."""
    p = pipeline_for(services)
    r = p.ingest(adt("A01", "g-ff", mrn="960").replace(b"Doe", b"Do\x0ce"), "t")
    assert r.ack_code == "AA", r.acks
    patient = services.client.search("Patient", [("identifier", "urn:oid:1.2.3|960")])[0]
    assert patient["name"][0]["family"] == "Do e"
