"""Two writers racing on the same resource (API replicas, gunicorn threads, an MLLP pod beside them).

Each test makes the race happen every time instead of now and then: the first request to look up waits
after its lookup (up to ``WAIT_S``) until the second request has looked up too. Without serialisation both
lookups find nothing and both requests create: two Patients with one MRN. With it, the second request's
lookup waits for the first request's commit (SQLite: its write lock; PostgreSQL: an advisory lock on the
criteria), the first request's wait times out, and the second finds what the first created.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.model import FhirRequest
from fhir_server.storage.repository import SqlFhirRepository

WAIT_S = 1.5
MRN = "urn:oid:1.2.36.146.595.217.0.1"


class LookupRace:
    """Holds the first thread that runs ``method`` for ``resource_type`` until a second thread ran it too."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, method: str, resource_type: str) -> None:
        self.first: int | None = None
        self.second_looked = threading.Event()
        self.overlapped = False
        original = getattr(SqlFhirRepository, method)

        def looked_up(repo: SqlFhirRepository, *args: Any, **kwargs: Any) -> Any:
            result = original(repo, *args, **kwargs)
            if _resource_type(args) != resource_type:
                return result
            me = threading.get_ident()
            if self.first is None:
                self.first = me
                self.overlapped = self.second_looked.wait(WAIT_S)
            elif me != self.first:
                self.second_looked.set()
            return result

        monkeypatch.setattr(SqlFhirRepository, method, looked_up)


def _resource_type(args: tuple[Any, ...]) -> str | None:
    query = args[0]
    if isinstance(query, str):  # _current_row_for_write(rt, id)
        return query
    return (query.resource_types or [None])[0]


def race(*requests: Callable[[], Any]) -> list[Any]:
    """Run the requests in threads, the first one started first; their results in order."""
    results: list[Any] = [None] * len(requests)

    def run(i: int) -> None:
        try:
            results[i] = requests[i]()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
        t.join(0.2)  # the first is in its lookup (or holding the lock) before the second starts
    for t in threads:
        t.join(60)
    return results


def _patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": MRN, "value": "12345"}], "name": [{"family": family}]}


def _patients(services: Any) -> list[dict[str, Any]]:
    resp = services.router.handle(FhirRequest("GET", "Patient", [("identifier", f"{MRN}|12345")]))
    return [e["resource"] for e in resp.resource.get("entry", [])]


def test_racing_conditional_creates_make_one_patient(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    race_ = LookupRace(monkeypatch, "search", "Patient")

    def create(family: str) -> Callable[[], Any]:
        return lambda: services.router.handle(FhirRequest(
            "POST", "Patient", headers={"If-None-Exist": f"identifier={MRN}|12345"}, resource=_patient(family)))

    first, second = race(create("First"), create("Second"))
    assert not race_.overlapped  # the second lookup waited for the first commit
    assert sorted([first.status, second.status]) == [200, 201]
    creator = "First" if first.status == 201 else "Second"  # (normally the first: it started 0.2 s earlier)
    assert [p["name"][0]["family"] for p in _patients(services)] == [creator]


def test_racing_conditional_updates_make_one_patient(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    race_ = LookupRace(monkeypatch, "search", "Patient")

    def update(family: str) -> Callable[[], Any]:
        return lambda: services.router.handle(FhirRequest(
            "PUT", "Patient", [("identifier", f"{MRN}|12345")], resource=_patient(family)))

    first, second = race(update("First"), update("Second"))
    assert not race_.overlapped
    assert sorted([first.status, second.status]) == [200, 201]
    updater = "First" if first.status == 200 else "Second"
    patients = _patients(services)
    assert len(patients) == 1
    assert patients[0]["name"][0]["family"] == updater and patients[0]["meta"]["versionId"] == "2"


def test_racing_transactions_with_conditional_entries_make_one_patient(
        services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HL7v2 pipeline's path: a transaction Bundle whose Patient is a conditional create, the Encounter
    pointing at it (two MLLP listeners, or a feed and an API client, admitting the same new patient)."""
    race_ = LookupRace(monkeypatch, "search", "Patient")

    def admit(family: str) -> Callable[[], Any]:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:4f1a2b3c-0000-4000-8000-000000000001", "resource": _patient(family),
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN}|12345"}},
            {"resource": {"resourceType": "Encounter", "status": "in-progress",
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                          "subject": {"reference": "urn:uuid:4f1a2b3c-0000-4000-8000-000000000001"}},
             "request": {"method": "POST", "url": "Encounter"}}]}
        return lambda: services.router.handle(FhirRequest("POST", "", resource=bundle))

    first, second = race(admit("First"), admit("Second"))
    assert not race_.overlapped
    assert first.status == second.status == 200, (first.resource, second.resource)
    created = [resp.resource["entry"][0]["response"]["status"].startswith("201") for resp in (first, second)]
    assert sorted(created) == [False, True]  # one transaction created the patient, the other found it
    patients = _patients(services)
    assert [p["name"][0]["family"] for p in patients] == ["First" if created[0] else "Second"]
    encounters = services.router.handle(FhirRequest("GET", "Encounter", [("subject", f"Patient/{patients[0]['id']}")]))
    assert len(encounters.resource["entry"]) == 2  # both admissions point at the one patient


def test_racing_creates_of_one_new_id_never_fail_with_500(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``PUT Patient/abc`` twice at once for a new id: both read "no such resource". On PostgreSQL the
    second insert then hits the unique (type, id) key: 409 Conflict, asking to retry (it was a 500)."""
    LookupRace(monkeypatch, "_current_row_for_write", "Patient")

    def put(family: str) -> Callable[[], Any]:
        return lambda: services.router.handle(FhirRequest("PUT", "Patient/race-1", resource={
            **_patient(family), "id": "race-1"}))

    first, second = race(put("First"), put("Second"))
    statuses = sorted([first.status, second.status])
    assert statuses in ([200, 201], [201, 409]), (first.resource, second.resource)
    if 409 in statuses:
        loser = first if first.status == 409 else second
        issue = loser.resource["issue"][0]
        assert issue["code"] == "conflict" and "retry" in issue["diagnostics"]
    assert len(_patients(services)) == 1


def test_a_deadlock_between_two_writers_is_a_409_for_one_and_the_other_commits(
        services: Any, db_url: str) -> None:
    """Two transactions taking criteria locks in opposite orders (a Bundle's are taken at once, in key order,
    but an HL7v2 group commit takes one message's at a time): PostgreSQL breaks the cycle by failing one,
    which must be a 409 asking to retry, not a 500."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers at BEGIN IMMEDIATE: no lock cycle can form")
    a = ("Patient", (("identifier", "urn:a|1"),))
    b = ("Patient", (("identifier", "urn:b|1"),))
    holding = threading.Barrier(2, timeout=10)

    def writer(first: Any, then: Any) -> Callable[[], str]:
        def run() -> str:
            with services.repo.unit_of_work() as uow:
                uow.lock_criteria([first])
                holding.wait()  # both hold their first lock: each now waits for the other's
                uow.lock_criteria([then])
                uow.create({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]})
            return "committed"
        return run

    results = race(writer(a, b), writer(b, a))
    assert sorted(map(type, results), key=lambda t: t.__name__) == [OperationOutcomeError, str], results
    lost = next(r for r in results if isinstance(r, OperationOutcomeError))
    assert lost.status == 409 and "retry" in str(lost.outcome()), lost.outcome()
    found = services.router.handle(FhirRequest("GET", "Patient", [("identifier", "urn:x|1")]))
    assert len(found.resource.get("entry", [])) == 1  # the survivor's write, and nothing of the loser's

