"""The Alembic migrations build exactly the schema that tables.py declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.tables import metadata


def _full_text(change: object) -> bool:
    """Full-text search objects (FTS5 tables, tsvector indexes) are made by the migration in raw SQL."""
    obj = change[1] if isinstance(change, tuple) else None
    return "_fts" in str(getattr(obj, "name", ""))


def test_migrated_schema_matches_the_declared_one(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = [d for d in compare_metadata(MigrationContext.configure(conn), metadata) if not _full_text(d)]
        indexes = {r[0] for r in conn.exec_driver_sql(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'idx_string'" if engine.dialect.name == "postgresql"
            else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'idx_string'").all()}
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
