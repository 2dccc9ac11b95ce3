"""Two HL7v2 pipelines (two listener pods, or one beside API replicas) on one database, admitting the same new
patient at the same moment: one Patient and one Encounter, both messages AA.

The race is forced as in tests/integration/fhir_server/test_concurrent_writes.py: the first writer's Patient
lookup waits for the second's. Before the criteria locks, on PostgreSQL both pipelines' transactions found
no patient and each created one.
"""

from __future__ import annotations

from typing import Any

import pytest

from interfaces.service import pipeline_for
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
