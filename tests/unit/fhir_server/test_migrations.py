"""The Alembic migrations build exactly the schema that tables.py declares, on both databases."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import alembic_config, upgrade
from fhir_server.storage.tables import metadata


def _indexes(engine: Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.exec_driver_sql(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s" if engine.dialect.name == "postgresql"
            else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)).all()}


def _full_text(change: object) -> bool:
    """Full-text search objects (FTS5 tables, tsvector indexes) are made by the migration in raw SQL."""
    obj = change[1] if isinstance(change, tuple) else None
    return "_fts" in str(getattr(obj, "name", ""))


def _sqlite_index_row_key(change: object, dialect: str) -> bool:
    """SQLite keeps the index tables' foreign keys that 0001 made (migration 0006 drops them on PostgreSQL)."""
    return (dialect == "sqlite" and isinstance(change, tuple) and change[0] == "remove_fk"
            and change[1].parent.name.startswith("idx_") and change[1].referred_table.name == "fhir_resource")


def test_migrated_schema_matches_the_declared_one(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = [d for d in compare_metadata(MigrationContext.configure(conn), metadata)
                if not _full_text(d) and not _sqlite_index_row_key(d, engine.dialect.name)]
    indexes = _indexes(engine, "idx_string")
    engine.dispose()
    assert diff == []
    assert "ix_string_norm" in indexes and "ix_string_exact" not in indexes


def test_upgrade_from_0001_keeps_data_and_searches(db_url: str) -> None:
    """A database made by the first schema upgrades in place, and :exact still finds its rows."""
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from fhir_server.model import FhirRequest

    engine = make_engine(db_url)
    upgrade(engine, "0001")
    engine.dispose()
    svc = build_services(Settings(database_url=db_url, auth=False))  # upgrades to head on start
    pid = svc.router.handle(FhirRequest("POST", "Patient", resource={
        "resourceType": "Patient", "name": [{"family": "Müller"}]})).resource["id"]
    for value, hits in (("Müller", 1), ("müller", 0), ("Muller", 0)):
        got = svc.router.handle(FhirRequest("GET", "Patient", [("family:exact", value)])).resource
        assert [e["resource"]["id"] for e in got.get("entry", [])] == [pid] * hits, value
    svc.engine.dispose()


def test_postgresql_knows_that_system_and_code_hashes_go_together(db_url: str) -> None:
    """`system|code` is two equalities on ix_token_code; estimated as independent they undercount a common
    code ~100x (at 1M: 170 expected, 27,196 found) and the plan degrades. Migration 0004 adds statistics."""
    import pytest

    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL planner statistics")
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:  # 100 codes x 200 resources each, every code in one system
        conn.exec_driver_sql(
            "INSERT INTO fhir_resource (pk, res_type, fhir_id, version, last_updated, deleted, body) "
            "SELECT g, 'Observation', 'o' || g, 1, 0, false, '{}' FROM generate_series(1, 20000) g")
        conn.exec_driver_sql(
            "INSERT INTO idx_token (res_pk, hash_identity, hash_sys_value, hash_value, system, value) "
            "SELECT g, 7, 1000 + mod(g, 100), 2000 + mod(g, 100), 's', 'c' FROM generate_series(1, 20000) g")
        conn.exec_driver_sql("ANALYZE idx_token")
    with engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) SELECT res_pk FROM idx_token "
                                    "WHERE hash_value = 2042 AND hash_sys_value = 1042").scalar()
    engine.dispose()
    assert plan[0]["Plan"]["Plan Rows"] >= 100  # 200 rows match; independence would estimate 2


def test_one_reference_target_index_serves_every_target_query(db_url: str) -> None:
    """Migration 0005 merges the two reference-target indexes into ix_ref_target (target_id, target_type,
    hash_identity): down to 0004 the old pair comes back, and up again the rows written before are still found
    by `subject` and `patient` searches, `_has` and `_revinclude` through the one new index."""
    from alembic import command

    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from fhir_server.model import FhirRequest
    from fhir_server.storage.migrate import alembic_config

    def ids(svc: Any, rt: str, params: list[tuple[str, str]]) -> list[str]:
        got = svc.router.handle(FhirRequest("GET", rt, params)).resource
        return sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in got.get("entry", []))

    svc = build_services(Settings(database_url=db_url, auth=False))
    pid = svc.router.handle(FhirRequest("POST", "Patient", resource={"resourceType": "Patient"})).resource["id"]
    oid = svc.router.handle(FhirRequest("POST", "Observation", resource={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": f"Patient/{pid}"}})).resource["id"]
    svc.engine.dispose()
    engine = make_engine(db_url)
    command.downgrade(alembic_config(engine), "0004")
    assert {"ix_ref_target", "ix_ref_target_any"} <= _indexes(engine, "idx_reference")
    engine.dispose()

    svc = build_services(Settings(database_url=db_url, auth=False))  # upgrades to head on start
    indexes = _indexes(svc.engine, "idx_reference")
    assert "ix_ref_target_any" not in indexes and "ix_ref_target" in indexes
    assert ids(svc, "Observation", [("subject", f"Patient/{pid}")]) == [f"Observation/{oid}"]
    assert ids(svc, "Observation", [("patient", pid)]) == [f"Observation/{oid}"]
    assert ids(svc, "Patient", [("_has:Observation:subject:status", "final")]) == [f"Patient/{pid}"]
    assert ids(svc, "Patient", [("_id", pid), ("_revinclude", "Observation:subject")]) == sorted(
        [f"Patient/{pid}", f"Observation/{oid}"])
    if svc.engine.dialect.name == "sqlite":  # the one index serves a target with and without its parameter
        with svc.engine.connect() as conn:
            for where in ("target_id = 'a' AND target_type = 'Patient' AND hash_identity = 1",
                          "target_id = 'a' AND target_type = 'Patient'"):
                plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN SELECT res_pk FROM idx_reference WHERE {where}").all())
                assert "ix_ref_target" in plan, plan
    svc.engine.dispose()


def test_index_rows_carry_no_foreign_key_on_postgresql(db_url: str) -> None:
    """Migration 0006: no parent-row check per index row written; a downgrade puts the keys back."""
    engine = make_engine(db_url)
    upgrade(engine)

    def keyed() -> set[str]:
        inspector = inspect(engine)
        return {t for t in ("idx_token", "idx_reference", "idx_text", "fhir_resource_history")
                if any(fk["referred_table"] == "fhir_resource" for fk in inspector.get_foreign_keys(t))}

    try:
        if engine.dialect.name == "sqlite":
            assert keyed() == {"idx_token", "idx_reference", "idx_text", "fhir_resource_history"}  # as 0001 made
            return
        assert keyed() == {"fhir_resource_history"}  # a version is not derived data: it keeps its key
        command.downgrade(alembic_config(engine), "0005")
        assert keyed() == {"idx_token", "idx_reference", "idx_text", "fhir_resource_history"}
        upgrade(engine)
        assert keyed() == {"fhir_resource_history"}
    finally:
        engine.dispose()
