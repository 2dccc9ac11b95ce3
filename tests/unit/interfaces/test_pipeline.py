"""Store, dedup, ACK codes and replay through the public pipeline API (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from fhir_server.errors import unprocessable
from fhir_server.storage.engine import make_engine
from interfaces.client import ack_code
from interfaces.er7 import parse_er7
from interfaces.pipeline import Hl7Pipeline
from interfaces.store import MessageStore

ADT = (
    "MSH|^~\\&|ADM|HOSP|DF|DF|20240101120000||ADT^A01^ADT_A01|{cid}|P|2.5.1{ack}\r"
    "EVN|A01|20240101120000\r"
    "PID|1||{mrn}^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19800101|F\r"
    "PV1|1|I|W1^1^2||||123^Who^Doc|||||||||||V{mrn}^^^HOSP&1.2.3&ISO^VN|||||||||||||||||||||||||20240101110000\r"
)


def adt(cid: str, mrn: str = "100", ack: str = "") -> bytes:
    return ADT.format(cid=cid, mrn=mrn, ack=ack).encode()


def pg_engine():
    base = os.environ.get("DIGITALFRONT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        name = f"hl7_{uuid.uuid4().hex[:10]}"
        with admin.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at {base}: {exc}")
    return create_engine(base.rsplit("/", 1)[0] + "/" + name), admin, name


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield MessageStore(make_engine(f"sqlite:///{tmp_path}/hl7.db"))
        return
    engine, admin, name = pg_engine()
    yield MessageStore(engine)
    engine.dispose()
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_raw_is_persisted_before_the_fhir_write_and_aa_after(store, writer):
    seen = []
    writer.on_call = lambda bundle: seen.append(store.search(limit=5))
    p = Hl7Pipeline(store, writer)
    r = p.ingest(adt("c1"), "test")
    assert [m.status for m in seen[0]] == ["received"]  # durable before processing
    assert r.status == "processed" and ack_code(r.acks[0]) == "AA"
    msa = parse_er7(r.acks[0].decode()).first("MSA")
    assert msa.get(2) == "c1"  # MSA-2 echoes MSH-10
    ack_msh = parse_er7(r.acks[0].decode()).msh
    assert (ack_msh.get(5), ack_msh.get(6), ack_msh.get(9, 1), ack_msh.get(12)) == ("ADM", "HOSP", "ACK", "2.5.1")
    stored = store.get(r.message_id)
    assert stored.raw == adt("c1") and stored.control_id == "c1" and stored.message_type == "ADT^A01"
    assert stored.resources == r.resources and any(x.startswith("Patient/") for x in stored.resources)


def test_duplicate_control_id_from_same_sender_is_not_applied_twice(store, writer):
    p = Hl7Pipeline(store, writer)
    first = p.ingest(adt("dup"), "a")
    again = p.ingest(adt("dup"), "b")
    assert len(writer.bundles) == 1
    assert again.status == "duplicate" and again.duplicate_of == first.message_id
    assert again.acks == [store.get(first.message_id).ack]
    other_sender = p.ingest(adt("dup").replace(b"|ADM|", b"|OTHER|"), "c")
    assert other_sender.status == "processed" and len(writer.bundles) == 2
    assert store.counts()["duplicate"] == 1


def test_garbage_is_rejected_and_kept(store, writer):
    r = Hl7Pipeline(store, writer).ingest(b"hello world", "t")
    assert r.ack_code == "AR" and r.status == "rejected"
    err = parse_er7(r.acks[0].decode()).first("ERR")
    assert err.get(3, 1) == "100" and err.get(3, 3) == "HL70357"
    assert store.get(r.message_id).raw == b"hello world"


def test_unsupported_message_type_is_ar_with_err_200(store, writer):
    raw = b"MSH|^~\\&|A|B|C|D|20240101||QRY^Q01|q1|P|2.5\rQRD|x\r"
    r = Hl7Pipeline(store, writer).ingest(raw, "t")
    assert r.ack_code == "AR"
    assert parse_er7(r.acks[0].decode()).first("ERR").get(3, 1) == "200"


def test_an_unknown_event_of_a_mapped_message_type_is_ar_with_err_201(store, writer):
    raw = adt("e201").replace(b"ADT^A01^ADT_A01", b"ADT^A99").replace(b"EVN|A01", b"EVN|A99")
    r = Hl7Pipeline(store, writer).ingest(raw, "t")
    assert r.ack_code == "AR"
    err = parse_er7(r.acks[0].decode()).first("ERR")
    assert err.get(3, 1) == "201" and err.raw(2) == "MSH^1^9"


def test_mapping_error_is_ae_with_location_then_replay_after_fix(store, writer):
    p = Hl7Pipeline(store, writer)
    bad = adt("m1").replace(b"19800101", b"1980-01-01")
    r = p.ingest(bad, "t")
    assert r.ack_code == "AE" and r.status == "error"
    err = parse_er7(r.acks[0].decode()).first("ERR")
    assert (err.get(2, 1), err.get(2, 3), err.get(3, 1)) == ("PID", "7", "102")
    assert store.get(r.message_id).outcome["location"] == "PID^1^7"
    # The same message re-sent gets the original AE back, not a second attempt.
    assert p.ingest(bad, "t").acks[0] == store.get(r.message_id).ack
    assert writer.bundles == []


def test_fhir_rejection_is_ae_and_replay_applies_it(store, writer):
    p = Hl7Pipeline(store, writer)
    writer.fail_with = unprocessable("Patient.birthDate invalid")
    r = p.ingest(adt("f1"), "t")
    assert r.ack_code == "AE"
    assert store.get(r.message_id).outcome["status"] == 422
    writer.fail_with = None
    ids = list(store.iter_ids(status="error"))
    assert ids == [r.message_id]
    again = p.replay(r.message_id)
    assert again.ack_code == "AA" and store.get(r.message_id).status == "processed"
    assert store.get(r.message_id).attempts == 2


def test_enhanced_mode_duplicate_gets_a_commit_ack_and_the_original_application_ack(store, writer):
    """A sender in enhanced mode waits for two frames; a re-send answered with one left it waiting."""
    p = Hl7Pipeline(store, writer)
    first = p.ingest(adt("e-dup", ack="|||AL|AL"), "t", on_commit=lambda _ack: None)
    again = p.ingest(adt("e-dup", ack="|||AL|AL"), "t", on_commit=lambda _ack: None)
    assert again.status == "duplicate" and [ack_code(a) for a in again.acks] == ["CA", "AA"]
    assert again.acks[1] == store.get(first.message_id).ack
    quiet = p.ingest(adt("e-dup", ack="|||AL|NE"), "t")  # this re-send asks for no application ACK
    assert [ack_code(a) for a in quiet.acks] == ["CA"]
    plain = p.ingest(adt("e-dup"), "t")  # original mode: the original ACK, as before
    assert plain.acks == [store.get(first.message_id).ack]


def test_enhanced_mode_commit_ack_then_application_ack(store, writer):
    p = Hl7Pipeline(store, writer)
    commits = []
    r = p.ingest(adt("e1", ack="|||AL|AL"), "t", on_commit=commits.append)
    assert [ack_code(a) for a in commits] == ["CA"] and [ack_code(a) for a in r.acks] == ["AA"]
    r2 = p.ingest(adt("e2", ack="|||AL|NE"), "t")
    assert [ack_code(a) for a in r2.acks] == ["CA"]  # NE: no application ACK
    r3 = p.ingest(adt("e3", ack="|||NE|ER"), "t")
    assert r3.acks == []  # success and the sender asked for errors only


def test_crashed_message_is_retried_not_duplicated(store, writer):
    # A copy stored as "received" (the process died before finishing) is processed when re-sent.
    from interfaces.parsing import parse

    _, header = parse(adt("k1"))
    orphan = store.insert(adt("k1"), source="t", status="received", header=header)
    r = Hl7Pipeline(store, writer).ingest(adt("k1"), "t")
    assert r.message_id == orphan and r.ack_code == "AA"
    assert store.counts()["processed"] == 1 and sum(store.counts().values()) == 1


def test_search_filters(store, writer):
    p = Hl7Pipeline(store, writer)
    p.ingest(adt("s1"), "t")
    p.ingest(b"junk", "t")
    assert [m.control_id for m in store.search(status="processed")] == ["s1"]
    assert [m.status for m in store.search(message_type="ADT")] == ["processed"]
    assert len(store.search(sender="HOSP")) == 1


def test_find_by_control_id_and_by_content(store, writer):
    """What an engineer asks first about a feed: "where is message X", "what came for MRN Y"."""
    p = Hl7Pipeline(store, writer)
    p.ingest(adt("c1", mrn="4_%7"), "t")  # LIKE's wildcards in an MRN are plain characters here
    p.ingest(adt("c2", mrn="4a%7"), "t")
    p.ingest(adt("c3", mrn="507"), "t")
    p.ingest(b"junk with 4_%7 in it", "t")
    assert [m.control_id for m in store.search(control_id="c2")] == ["c2"]
    assert store.search(control_id="c") == []  # exact, not a prefix
    assert sorted(m.control_id or m.status for m in store.search(contains=b"4_%7")) == ["c1", "rejected"]
    assert [m.control_id for m in store.search(contains=b"PID|1||507^", status="processed")] == ["c3"]
    assert store.search(contains=b"pid|1||507") == []  # exact case


def test_find_a_patients_messages_failed_ones_included(store, writer):
    p = Hl7Pipeline(store, writer)
    p.ingest(adt("p1", mrn="610"), "t")
    p.ingest(adt("p2", mrn="611"), "t")
    # the MR wins over an identifier listed before it; a message that fails to map is filed under it too
    p.ingest(adt("p3", mrn="X9^^^HOSP^PI~610").replace(b"|19800101|", b"|1980-13-45|"), "t")
    p.ingest(adt("p4", mrn="610").replace(b"2.5.1", b"9.9"), "t")  # refused (AR): still filed
    found = store.search(patient="610")
    assert [(m.control_id, m.status) for m in found] == [("p4", "rejected"), ("p3", "error"), ("p1", "processed")]
    assert found[0].summary()["patientId"] == "610"
    assert store.search(patient="X9") == [] and store.search(patient="61") == []


def test_an_index_added_later_is_created_on_an_existing_store(store):
    from sqlalchemy import inspect

    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_hl7v2_message_patient"))
    assert "ix_hl7v2_message_patient" not in {i["name"] for i in inspect(store.engine).get_indexes("hl7v2_message")}
    MessageStore(store.engine)  # a server starting on a database made before the index existed
    assert "ix_hl7v2_message_patient" in {i["name"] for i in inspect(store.engine).get_indexes("hl7v2_message")}
    assert store.search(contains=b"\x00") == []


def test_time_filters_compare_instants_not_wall_clocks(store, writer):
    """``since``/``until`` with any UTC offset mean the same instant (SQLite keeps no offset of its own)."""
    p = Hl7Pipeline(store, writer)
    p.ingest(adt("t1"), "t")
    m = store.search()[0]
    assert m.received_at.utcoffset() == timedelta(0) and m.processed_at is not None \
        and m.processed_at.utcoffset() == timedelta(0)
    before, after = m.received_at - timedelta(minutes=5), m.received_at + timedelta(minutes=5)
    for zone in (timezone(timedelta(hours=1)), timezone(timedelta(hours=-6)), UTC):
        assert [x.control_id for x in store.search(since=before.astimezone(zone))] == ["t1"], zone
        assert store.search(since=after.astimezone(zone)) == [], zone
        assert list(store.iter_ids(until=after.astimezone(zone))) == [m.id], zone
        assert list(store.iter_ids(until=before.astimezone(zone))) == [], zone
    assert [x.id for x in store.search(since=before.replace(tzinfo=None))] == [m.id]  # naive: UTC


def test_writer_thread_leaves_when_idle_and_a_new_one_takes_over(store, writer, monkeypatch):

    import interfaces.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "WRITER_IDLE_S", 0.2)
    p = Hl7Pipeline(store, writer)
    futures = p.submit([(adt("idle-1"), "t", None), (adt("idle-2", mrn="101"), "t", None)])
    assert [f.result(30).ack_code for f in futures] == ["AA", "AA"]
    first = p._writer
    assert first is not None
    first.join(5)
    assert not first.is_alive() and p._writer is None
    assert p.ingest(adt("idle-3"), "t").ack_code == "AA"
    p.close()
    assert p._writer is None or not p._writer.is_alive()
    assert [m.status for m in store.search(limit=10)].count("processed") == 3


def test_a_resend_arriving_while_its_original_waits_is_answered_as_a_duplicate(store, writer):
    p = Hl7Pipeline(store, writer)
    first, again, other = p.submit([(adt("dup-q"), "t", None), (adt("dup-q"), "t", None),
                                    (adt("dup-r", mrn="102"), "t", None)])
    a, b, c = first.result(30), again.result(30), other.result(30)
    assert (a.status, b.status, c.status) == ("processed", "duplicate", "processed")
    assert b.duplicate_of == a.message_id and b.acks == [store.get(a.message_id).ack]
    assert len(writer.bundles) == 2  # applied once
