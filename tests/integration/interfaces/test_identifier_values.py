"""v2 identifiers with characters that mean something in a FHIR search (``,`` is OR, ``|`` splits system and
value, ``\\`` and ``$`` escape and join): the conditional writes keyed on them must find that record only.
Before the search escapes, an MRN ``12,34`` updated the patient with MRN ``12``."""

from __future__ import annotations

import hashlib

import pytest

from fhir_server.search.values import escape
from interfaces.mapping.builder import derived_id
from interfaces.service import pipeline_for
from tests.integration.interfaces.test_through_router import adt


@pytest.fixture
def services(services_factory):
    return services_factory(hl7_workers=0)  # SQLite; the writer maps (no worker processes to start)


def patients(services) -> dict[str, tuple[str, str]]:
    return {pt["identifier"][0]["value"]: (pt["name"][0]["family"], pt["meta"]["versionId"])
            for pt in services.client.search("Patient", {})}


def test_an_mrn_with_a_comma_or_a_pipe_is_its_own_patient(services):
    p = pipeline_for(services)
    assert p.ingest(adt("A01", "iv-1", mrn="12", family="Alpha"), "t").ack_code == "AA"
    assert p.ingest(adt("A01", "iv-2", mrn="12,34", family="Beta"), "t").ack_code == "AA"  # was: Alpha's record
    assert p.ingest(adt("A01", "iv-3", mrn="12\\F\\x", family="Gamma"), "t").ack_code == "AA"  # ER7 \F\ is "|"
    assert p.ingest(adt("A01", "iv-4", mrn="12\\E\\$y", family="Delta"), "t").ack_code == "AA"  # \E\ is "\"
    assert patients(services) == {"12": ("Alpha", "1"), "12,34": ("Beta", "1"), "12|x": ("Gamma", "1"),
                                  "12\\$y": ("Delta", "1")}
    # re-sending updates the same record (the escaped lookup finds it), never another one
    assert p.ingest(adt("A08", "iv-5", mrn="12,34", family="Beta-Renamed"), "t").ack_code == "AA"
    assert p.ingest(adt("A08", "iv-6", mrn="12\\F\\x", family="Gamma-Renamed"), "t").ack_code == "AA"
    assert patients(services) == {"12": ("Alpha", "1"), "12,34": ("Beta-Renamed", "2"),
                                  "12|x": ("Gamma-Renamed", "2"), "12\\$y": ("Delta", "1")}
    # and a client finds each with the same escapes
    for value in ("12,34", "12|x", "12\\$y"):
        found = services.client.search("Patient", [("identifier", f"urn:oid:1.2.3|{escape(value)}")])
        assert [pt["identifier"][0]["value"] for pt in found] == [value]


def test_derived_ids_of_different_identifiers_differ_and_plain_ones_are_unchanged():
    assert derived_id("Observation", {"system": "a", "value": "b|c"}) != \
        derived_id("Observation", {"system": "a|b", "value": "c"})
    # ids already stored (no "|" in system or value) keep their basis, so a re-sent message updates them
    plain = {"system": "urn:oid:1.2.3", "value": "F123"}
    assert derived_id("ServiceRequest", plain) == \
        "v2-" + hashlib.sha256(b"ServiceRequest|urn:oid:1.2.3|F123").hexdigest()[:40]


def orm(cid: str, placer: str, filler: str, control: str = "NW") -> bytes:
    return (f"MSH|^~\\&|EHR|HOSP|LAB|LAB|20240101120000||ORM^O01^ORM_O01|{cid}|P|2.5.1\r"
            "PID|1||740^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19800101|F\r"
            f"ORC|{control}|{placer}|{filler}||SC\r"
            f"OBR|1|{placer}|{filler}|24323-8^Panel^LN\r").encode()


def test_an_order_first_seen_by_its_filler_number_stays_one_order(services):
    """A lab's own order (reflex testing: ORC-1 SN) arrives with the filler number only; a later message
    carries both numbers: still one ServiceRequest, now with both. Numbers of two different orders are a
    conflict (AE, kept for replay), not a silent pick."""
    p = pipeline_for(services)

    def orders() -> list[list[str]]:
        found = services.client.search("ServiceRequest", [("subject:Patient.identifier", "urn:oid:1.2.3|740")])
        return sorted(sorted(i["value"] for i in sr["identifier"]) for sr in found)

    assert p.ingest(orm("o-1", "", "F100^LAB", control="SN"), "t").ack_code == "AA"
    assert p.ingest(orm("o-2", "P100^EHR", "F100^LAB"), "t").ack_code == "AA"
    assert orders() == [["F100", "P100"]]  # was two orders: the placer-keyed lookup missed the filler-only one
    assert p.ingest(orm("o-3", "P200^EHR", "F200^LAB"), "t").ack_code == "AA"
    r = p.ingest(orm("o-4", "P100^EHR", "F200^LAB"), "t")
    assert r.ack_code == "AE" and "matched more than one" in p.store.get(r.message_id).outcome["error"]
    assert orders() == [["F100", "P100"], ["F200", "P200"]]


@pytest.mark.parametrize(("authority", "system"), [
    ("HOSP&1.2.3&ISO", "urn:oid:1.2.3"),
    ("HOSP&1.2 3&ISO", "urn:id:1.2-3"),  # an "ISO" id with a space is no OID (and no URI): was refused by the core
    ("HOSP&http://example.org/mrn&URI", "http://example.org/mrn"),
    ("HOSP&http://example.org/m rn&URI", "urn:id:http:-example.org-m-rn"),
    ("MAIN HOSP", "urn:id:MAIN-HOSP"),
])
def test_an_assigning_authority_always_gives_a_valid_uri(services, authority, system):
    p = pipeline_for(services)
    r = p.ingest(adt("A01", f"aa-{authority}", mrn="750").replace(b"^^^HOSP&1.2.3&ISO^MR", f"^^^{authority}^MR"
                                                                  .encode()), "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome
    patient = next(services.client.read(*ref.split("/")) for ref in r.resources if ref.startswith("Patient/"))
    assert patient["identifier"][0]["system"] == system


def test_a_practitioner_named_only_by_a_suffix_gets_no_empty_display(services):
    p = pipeline_for(services)
    r = p.ingest(adt("A01", "pr-1", mrn="752").replace(b"W1^1^2||||", b"W1^1^2||||^^^^Jr"), "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome  # was refused: display ''
    r = p.ingest(adt("A01", "pr-2", mrn="753").replace(b"W1^1^2||||", b"W1^1^2||||77^^^^Jr"), "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome
    encounter = next(services.client.read(*ref.split("/")) for ref in r.resources if ref.startswith("Encounter/"))
    individual = encounter["participant"][0]["individual"]
    assert individual["reference"].startswith("Practitioner/") and "display" not in individual


@pytest.mark.parametrize(("pid24_25", "birth"), [
    ("Y|2", {"multipleBirthInteger": 2}),
    ("Y|99999999999999999999", {"multipleBirthBoolean": True}),  # beyond a FHIR integer (was refused)
    ("Y|", {"multipleBirthBoolean": True}),
    ("N|", {"multipleBirthBoolean": False}),
])
def test_multiple_birth_order_is_an_integer_only_when_fhir_can_hold_it(services, pid24_25, birth):
    p = pipeline_for(services)
    pid = "PID|1||754^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19800101|F" + "|" * 16 + pid24_25
    msg = adt("A01", "mb-" + pid24_25.replace("|", "-"), mrn="754")
    msg = msg.replace(next(s for s in msg.split(b"\r") if s.startswith(b"PID|")), pid.encode())
    r = p.ingest(msg, "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome
    patient = next(services.client.read(*ref.split("/")) for ref in r.resources if ref.startswith("Patient/"))
    assert {k: v for k, v in patient.items() if k.startswith("multipleBirth")} == birth
