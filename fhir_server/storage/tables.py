"""Schema: current resources, history, and HAPI-style search index tables.

Resource bodies are JSONB on PostgreSQL and JSON text on SQLite. Times are
stored as integer microseconds since the epoch (exact ordering, portable).
Index rows reference the resource's surrogate key and carry 64-bit hashed
identities (resource type + parameter [+ system + value]) so each common query
predicate is one B-tree lookup.

Every secondary index costs about one page write per row once a database is
large (rows land on random leaf pages), so an index exists only where a query
needs it: see the 0002 migration and docs/architecture.md.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

metadata = MetaData()

PK = BigInteger().with_variant(Integer(), "sqlite")


class JsonBody(TypeDecorator[str]):
    """Serialized JSON text; on PostgreSQL stored as a JSONB document (queryable with ->, @>)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):  # type: ignore[no-untyped-def]
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(Text())

    def bind_expression(self, bindvalue):  # type: ignore[no-untyped-def]
        return bindvalue

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if dialect.name == "postgresql" and isinstance(value, str):
            import orjson

            return orjson.loads(value)  # a JSONB document, not a JSONB string holding the text
        return value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        return value  # text on SQLite, a decoded document on PostgreSQL: see repository.load_body


resource = Table(
    "fhir_resource", metadata,
    Column("pk", PK, primary_key=True, autoincrement=False),
    Column("res_type", String(64), nullable=False),
    Column("fhir_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("body", JsonBody, nullable=True),
    UniqueConstraint("res_type", "fhir_id", name="uq_resource_type_id"),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
)

history = Table(
    "fhir_resource_history", metadata,
    Column("res_pk", PK, ForeignKey("fhir_resource.pk", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("fhir_id", String(64), nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),
    Column("body", JsonBody, nullable=True),
    Index("ix_history_updated", "last_updated"),
    Index("ix_history_type_updated", "res_type", "last_updated"),
)


def _res_pk() -> Column[int]:
    """The resource an index row belongs to. No foreign key: index rows are derived data the repository
    writes and deletes with their resource in one transaction (``$reindex`` rebuilds them), and nothing
    deletes resource rows. On PostgreSQL the key's trigger checked the parent row for every index row
    written (~160 per HL7v2 message): 25% of the server's CPU per message (migration 0006)."""
    return Column("res_pk", PK, nullable=False)


idx_string = Table(
    "idx_string", metadata, _res_pk(),
    Column("hash_identity", BigInteger, nullable=False),
    Column("value_norm", String(200), nullable=False),
    Column("value_exact", String(200), nullable=False),
    Index("ix_string_norm", "hash_identity", "value_norm"),  # also serves :exact (value_norm = norm(v) first)
    Index("ix_string_res", "res_pk"),
)

idx_token = Table(
    "idx_token", metadata, _res_pk(),
    Column("hash_identity", BigInteger, nullable=False),
    Column("hash_sys_value", BigInteger, nullable=False),
    Column("hash_value", BigInteger, nullable=False),
    Column("system", String(200), nullable=True),
    Column("value", String(200), nullable=True),
    # one index serves `code` and `system|code`: every row dirties a leaf page at scale (migration 0004)
    Index("ix_token_code", "hash_value", "hash_sys_value", "res_pk"),
    Index("ix_token_identity_system", "hash_identity", "system"),
    Index("ix_token_res", "res_pk"),
)

_ABSOLUTE_URL = text("target_url IS NOT NULL")

idx_reference = Table(
    "idx_reference", metadata, _res_pk(),
    Column("hash_identity", BigInteger, nullable=False),
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("target_url", String(500), nullable=True),
    # every target query names the id: one index serves `param=Type/id`, chains, _has and compartments
    # (migration 0005: two indexes dirtied two leaf pages per reference row written)
    Index("ix_ref_target", "target_id", "target_type", "hash_identity"),
    # absolute URLs are rare: a partial index keeps the NULLs of every relative reference out of it
    Index("ix_ref_url", "hash_identity", "target_url", sqlite_where=_ABSOLUTE_URL, postgresql_where=_ABSOLUTE_URL),
    Index("ix_ref_res", "res_pk", "hash_identity"),
)

idx_date = Table(
    "idx_date", metadata, _res_pk(),
    Column("hash_identity", BigInteger, nullable=False),
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    Index("ix_date_low", "hash_identity", "low"),
    Index("ix_date_high", "hash_identity", "high"),
    Index("ix_date_res", "res_pk", "hash_identity"),
)

idx_number = Table(
    "idx_number", metadata, _res_pk(),
    Column("hash_identity", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_number", "hash_identity", "value"),
    Index("ix_number_res", "res_pk"),
)

idx_quantity = Table(
    "idx_quantity", metadata, _res_pk(),
    Column("hash_identity", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("hash_units", BigInteger, nullable=True),
    Column("hash_code", BigInteger, nullable=True),
    Column("canon_value", Float, nullable=True),
    Column("canon_unit", String(32), nullable=True),
    Index("ix_quantity", "hash_identity", "value"),
    Index("ix_quantity_canon", "hash_identity", "canon_unit", "canon_value"),
    Index("ix_quantity_res", "res_pk"),
)

idx_uri = Table(
    "idx_uri", metadata, _res_pk(),
    Column("hash_identity", BigInteger, nullable=False),
    Column("uri", String(500), nullable=False),
    Index("ix_uri", "hash_identity", "uri"),
    Index("ix_uri_res", "res_pk"),
)

idx_composite = Table(
    "idx_composite", metadata, _res_pk(),
    Column("hash_identity", BigInteger, nullable=False),
    Column("c1_sys_value", BigInteger, nullable=False),
    Column("c1_value", BigInteger, nullable=False),
    Column("c2_sys_value", BigInteger, nullable=True),
    Column("c2_value", BigInteger, nullable=True),
    Column("c2_num", Float, nullable=True),
    Column("c2_units", BigInteger, nullable=True),
    Column("c2_low", BigInteger, nullable=True),
    Column("c2_high", BigInteger, nullable=True),
    Index("ix_composite_c1sv", "c1_sys_value"),
    Index("ix_composite_c1v", "c1_value"),
    Index("ix_composite_res", "res_pk"),
)

idx_text = Table(
    "idx_text", metadata,
    Column("res_pk", PK, primary_key=True),  # no foreign key, as ``_res_pk``
    Column("narrative", Text, nullable=True),
    Column("content", Text, nullable=True),
)

# Background jobs ($reindex) with persisted progress.
job = Table(
    "fhir_job", metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("params", Text, nullable=True),
    Column("progress", Integer, nullable=False, default=0),
    Column("total", Integer, nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    Column("error", Text, nullable=True),
)

INDEX_TABLES = {
    "string": idx_string, "token": idx_token, "reference": idx_reference, "date": idx_date,
    "number": idx_number, "quantity": idx_quantity, "uri": idx_uri, "composite": idx_composite,
}
