"""``savepoint()`` steps: buffered writes, a SQL SAVEPOINT only when a step must write early, and a step
whose final write fails part-way reported as ``PartialStepWrite`` (the caller rolls everything back)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from fhir_server.repository import PartialStepWrite
from fhir_server.storage.engine import writer


def _patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


def _savepoints(services: Any) -> list[str]:
    seen: list[str] = []

    def record(_conn, _cur, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.upper().startswith(("SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
            seen.append(statement.split()[0])

    event.listen(writer(services.engine), "before_cursor_execute", record)
    return seen


def test_steps_that_only_write_at_their_end_need_no_savepoint(services: Any) -> None:
    seen = _savepoints(services)
    repo = services.repo
    with repo.unit_of_work() as uow:
        with uow.savepoint():
            uow.create(_patient("Kept"))
        with pytest.raises(RuntimeError), uow.savepoint():
            uow.create(_patient("Dropped"))
            raise RuntimeError("rejected before its end")  # nothing of it reached the database
        with uow.savepoint():
            uow.create(_patient("AlsoKept"))
    assert seen == []
    families = sorted(p["name"][0]["family"] for p in services.client.search("Patient", []))
    assert families == ["AlsoKept", "Kept"]


def test_a_step_that_reads_its_own_writes_is_protected_by_a_savepoint(services: Any) -> None:
    seen = _savepoints(services)
    repo = services.repo
    with repo.unit_of_work() as uow:
        with pytest.raises(RuntimeError), uow.savepoint():
            made = uow.create(_patient("Early")).stored
            assert uow.read("Patient", made.id).resource["name"][0]["family"] == "Early"  # flushed: written
            raise RuntimeError("rejected after writing")
        with uow.savepoint():
            uow.create(_patient("Later"))
    assert seen == ["SAVEPOINT", "ROLLBACK"]  # (ROLLBACK TO SAVEPOINT)
    assert [p["name"][0]["family"] for p in services.client.search("Patient", [])] == ["Later"]


def test_a_final_write_that_fails_part_way_asks_for_a_rollback(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = services.repo
    real = type(repo)._insert_sql
    monkeypatch.setattr(type(repo), "_insert_sql",
                        lambda self, kind: "INSERT INTO no_such_table VALUES (1)" if kind == "date" else real(self, kind))
    with pytest.raises(PartialStepWrite), repo.unit_of_work() as uow, uow.savepoint():
        uow.create({**_patient("Half"), "birthDate": "1980-01-01"})  # its date row cannot be written
    monkeypatch.undo()
    assert services.client.search("Patient", []) == []  # the unit of work rolled back: not half a patient
