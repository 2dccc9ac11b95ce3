"""Round trips to the database on the write path: on PostgreSQL each one is a wait for the writer (the HL7v2
writer spent 63% of its time in them), so a conditional lookup is one statement and a transaction locks its
criteria once. Counted with the real drivers; the results are checked too, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from fhir_server.model import FhirRequest
from tests.integration.fhir_server.test_concurrent_writes import MRN, _patient, _patients


def _statements(engine: Any, run: Callable[[], Any]) -> list[str]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_a_transaction_locks_its_criteria_once(services: Any) -> None:
    """The Bundle locks every conditional entry's criteria up front; the entries' own conditional writes then
    find them held and ask PostgreSQL for nothing more (a round trip per entry before)."""
    def bundle(family: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": _patient(family),
             "request": {"method": "PUT", "url": f"Patient?identifier={MRN}|12345"}},
            {"resource": {"resourceType": "Practitioner", "identifier": [{"system": MRN, "value": "dr-1"}]},
             "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": f"identifier={MRN}|dr-1"}}]}

    for family in ("First", "Second"):  # creates, then finds and updates
        sql = _statements(services.engine, lambda f=family: services.router.handle(FhirRequest(
            "POST", "", resource=bundle(f))))
        locks = [s for s in sql if "pg_advisory_xact_lock" in s]
        assert len(locks) == (0 if services.engine.dialect.name == "sqlite" else 1), sql
    assert [p["name"][0]["family"] for p in _patients(services)] == ["Second"]


def test_a_conditional_lookup_is_one_statement_on_postgresql(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its keys and its rows in one round trip (two on SQLite, where a statement is a function call)."""
    from fhir_server.storage import search_sql

    driver_sql: list[str] = []
    original = search_sql.driver_rows

    def counted(conn: Any, sql: str, params: Any) -> Any:
        driver_sql.append(sql)
        return original(conn, sql, params)

    monkeypatch.setattr(search_sql, "driver_rows", counted)
    assert _patients(services) == []  # no keys at all
    services.router.handle(FhirRequest("POST", "Patient", resource=_patient("Found")))
    driver_sql.clear()
    found: list[Any] = []
    sql = _statements(services.engine, lambda: found.extend(_patients(services)))
    assert found[0]["name"][0]["family"] == "Found"
    assert sql == []  # no SQLAlchemy statement: the lookup's own driver SQL only
    assert len(driver_sql) == (2 if services.engine.dialect.name == "sqlite" else 1), driver_sql


def test_a_lookup_of_a_common_value_takes_the_general_path(services: Any) -> None:
    """More keys than ``FAST_LOOKUP_MAX``: the one-statement lookup hands over to the general search, which
    pages; nothing is lost either way."""
    from fhir_server.storage.search_sql import FAST_LOOKUP_MAX

    code = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    entries = [{"resource": {"resourceType": "Observation", "status": "final", "code": code,
                             "identifier": [{"system": MRN, "value": "batch"}]},
                "request": {"method": "POST", "url": "Observation"}} for _ in range(FAST_LOOKUP_MAX + 2)]
    done = services.router.handle(FhirRequest("POST", "", resource={
        "resourceType": "Bundle", "type": "transaction", "entry": entries}))
    assert done.status == 200
    page = services.router.handle(FhirRequest("GET", "Observation", [("identifier", f"{MRN}|batch"),
                                                                     ("_count", "10")])).resource
    assert len(page["entry"]) == 10 and any(link["relation"] == "next" for link in page["link"])
    one = services.router.handle(FhirRequest("GET", "Observation", [("identifier", f"{MRN}|other")])).resource
    assert one.get("entry", []) == []
