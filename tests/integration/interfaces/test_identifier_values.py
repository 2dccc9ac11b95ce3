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
def services(tmp_path):
    from digitalfront.app import build_services
    from digitalfront.config import Settings

    return build_services(Settings(database_url=f"sqlite:///{tmp_path}/id.db", auth=False, hl7_workers=0))


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
