"""HL7v2 -> FHIR through the real router and storage (build_services), SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from interfaces.service import pipeline_for
from tests.unit.interfaces.hl7_testkit import ig_messages

ADT = ("MSH|^~\\&|ADM|HOSP|DF|DF|20240101120000||ADT^{event}|{cid}|P|2.5.1\r"
       "EVN|{event}|20240101120000\r"
       "PID|1||{mrn}^^^HOSP&1.2.3&ISO^MR||{family}^Jane||19800101|F\r"
       "PV1|1|I|W1^1^2||||||||||||||||V{mrn}^^^HOSP&1.2.3&ISO^VN|||||||||||||||||||||||||20240101110000|{end}\r")


def adt(event: str, cid: str, mrn: str = "500", family: str = "Doe", end: str = "") -> bytes:
    return ADT.format(event=event, cid=cid, mrn=mrn, family=family, end=end).encode()


@pytest.fixture(params=["sqlite", "sqlite-workers", "postgres"])
def services(request, tmp_path):
    """The real stack; ``sqlite-workers`` maps, validates and indexes in worker processes (the server default)."""
    from digitalfront.app import build_services
    from digitalfront.config import Settings

    if request.param.startswith("sqlite"):
        workers = 2 if request.param == "sqlite-workers" else 0
        svc = build_services(Settings(database_url=f"sqlite:///{tmp_path}/df.db", auth=False, hl7_workers=workers))
        assert (pipeline_for(svc).prepare_pool is not None) == bool(workers)
        yield svc
        if pipeline_for(svc).prepare_pool is not None:
            pipeline_for(svc).prepare_pool.close()
        return
    base = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    name = f"hl7r_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    svc = build_services(Settings(database_url=base.rsplit("/", 1)[0] + "/" + name, auth=False))
    yield svc
    svc.engine.dispose()
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_ig_samples_commit_and_resending_updates_instead_of_duplicating(services):
    p = pipeline_for(services)
    for structure, msg in ig_messages().items():
        r = p.ingest(msg.encode(), "t")
        assert r.ack_code in ("AA", "CA") and r.status == "processed", (structure, p.store.get(r.message_id).outcome)
    before = {t: len(services.client.search(t, {})) for t in ("Patient", "Encounter", "Observation",
                                                               "DiagnosticReport", "Immunization")}
    for structure, msg in ig_messages().items():  # same content, new control ids: applied again
        p.ingest(msg.replace("|P|2.", "|P|2.", 1).encode().replace(b"|P|2.", b"x|P|2.", 1), "t")
    after = {t: len(services.client.search(t, {})) for t in before}
    assert after == before
    doc = services.client.search("DocumentReference", {})[0]
    assert doc["content"][0]["attachment"]["contentType"].startswith("text/plain")
    prov = services.client.search("Provenance", {})
    assert prov and all(x["entity"][0]["what"]["identifier"]["system"] == "urn:digitalfront:hl7v2:message"
                        for x in prov)


def test_encounter_status_follows_events_and_a08_does_not_regress_it(services):
    p = pipeline_for(services)
    assert p.ingest(adt("A01", "1"), "t").ack_code == "AA"
    assert p.ingest(adt("A03", "2", end="20240102100000"), "t").ack_code == "AA"
    assert p.ingest(adt("A08", "3", family="Roe", end="20240102100000"), "t").ack_code == "AA"
    encounters = services.client.search("Encounter", {})
    assert len(encounters) == 1 and encounters[0]["status"] == "finished"
    patients = services.client.search("Patient", {})
    assert len(patients) == 1 and patients[0]["name"][0]["family"] == "Roe"
    assert p.ingest(adt("A11", "4"), "t").ack_code == "AA"
    assert services.client.search("Encounter", {})[0]["status"] == "cancelled"


def test_a40_merge_links_both_records(services):
    p = pipeline_for(services)
    p.ingest(adt("A01", "m1", mrn="OLD"), "t")
    p.ingest(adt("A01", "m2", mrn="NEW"), "t")
    merge = (b"MSH|^~\\&|ADM|HOSP|DF|DF|20240103||ADT^A40^ADT_A39|m3|P|2.5.1\r"
             b"PID|1||NEW^^^HOSP&1.2.3&ISO^MR||Doe^Jane\rMRG|OLD^^^HOSP&1.2.3&ISO^MR\r")
    r = p.ingest(merge, "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome
    old = services.client.search("Patient", {"identifier": "urn:oid:1.2.3|OLD"})[0]
    new = services.client.search("Patient", {"identifier": "urn:oid:1.2.3|NEW"})[0]
    assert old["active"] is False and old["link"][0]["type"] == "replaced-by"
    assert old["link"][0]["other"]["reference"] == f"Patient/{new['id']}"
    assert old["name"][0]["family"] == "Doe"  # patched, not overwritten
    assert new["link"][0]["type"] == "replaces"
