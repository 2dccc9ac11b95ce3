"""The terminology tables: our own MetaData, created idempotently on SQLite and PostgreSQL.

Concepts are keyed per code system by a dense sequence number (``seq``) so the
closure and relation tables stay narrow integer tables, and so a code
system can be dropped or replaced with a handful of ``DELETE ... WHERE cs_id``.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

code_system = Table(
    "tx_code_system", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", String(512), nullable=False),
    Column("version", String(128), nullable=False, default=""),
    Column("name", String(256)),
    Column("content", String(32), nullable=False, default="complete"),
    Column("case_sensitive", Boolean, nullable=False, default=True),
    Column("value_set", String(512)),
    Column("concept_count", Integer, nullable=False, default=0),
    Column("resource", Text, nullable=False),  # the CodeSystem JSON without its concepts
    Column("origin", String(128), index=True),  # "CodeSystem/<id>" when synced from the FHIR store
    UniqueConstraint("url", "version", name="uq_tx_cs_url_version"),
)

concept = Table(
    "tx_concept", metadata,
    Column("cs_id", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("code", String(256), nullable=False),
    Column("display", Text),
    Column("definition", Text),
    Column("inactive", Boolean, nullable=False, default=False),
    Column("abstract", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("cs_id", "seq"),
    UniqueConstraint("cs_id", "code", name="uq_tx_concept_code"),
)

designation = Table(
    "tx_designation", metadata,
    Column("cs_id", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("language", String(32)),
    Column("use_system", String(512)),
    Column("use_code", String(128)),
    Column("value", Text, nullable=False),
    Index("ix_tx_designation_concept", "cs_id", "seq"),
)

concept_property = Table(
    "tx_property", metadata,
    Column("cs_id", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("code", String(128), nullable=False),
    Column("value_type", String(16), nullable=False),  # code|string|boolean|integer|decimal|dateTime|coding
    Column("value", Text, nullable=False),
    Column("value_system", String(512)),  # for Coding values
    Index("ix_tx_property_concept", "cs_id", "seq"),
    Index("ix_tx_property_value", "cs_id", "code", "value"),
)

# Direct is-a edges (child -> parent); the source of $lookup parent/child.
parent = Table(
    "tx_parent", metadata,
    Column("cs_id", Integer, nullable=False),
    Column("child", Integer, nullable=False),
    Column("parent", Integer, nullable=False),
    PrimaryKeyConstraint("cs_id", "child", "parent"),
    Index("ix_tx_parent_parent", "cs_id", "parent"),
)

# Transitive closure of ``parent`` without the reflexive pairs.
closure = Table(
    "tx_closure", metadata,
    Column("cs_id", Integer, nullable=False),
    Column("ancestor", Integer, nullable=False),
    Column("descendant", Integer, nullable=False),
    Column("depth", Integer, nullable=False),
    PrimaryKeyConstraint("cs_id", "ancestor", "descendant"),
    Index("ix_tx_closure_desc", "cs_id", "descendant"),
)

value_set = Table(
    "tx_value_set", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", String(512), nullable=False),
    Column("version", String(128), nullable=False, default=""),
    Column("name", String(256)),
    Column("resource", Text, nullable=False),
    Column("origin", String(128), index=True),
    UniqueConstraint("url", "version", name="uq_tx_vs_url_version"),
)

concept_map = Table(
    "tx_concept_map", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", String(512), nullable=False),
    Column("version", String(128), nullable=False, default=""),
    Column("source", String(512)),
    Column("target", String(512)),
    Column("resource", Text, nullable=False),
    Column("origin", String(128), index=True),
    UniqueConstraint("url", "version", name="uq_tx_cm_url_version"),
)

map_element = Table(
    "tx_map_element", metadata,
    Column("cm_id", Integer, nullable=False),
    Column("source_system", String(512)),
    Column("source_version", String(128)),
    Column("source_code", String(256), nullable=False),
    Column("source_display", Text),
    Column("target_system", String(512)),
    Column("target_version", String(128)),
    Column("target_code", String(256)),
    Column("target_display", Text),
    Column("equivalence", String(32), nullable=False, default="equivalent"),
    Column("comment", Text),
    Index("ix_tx_map_source", "source_code", "source_system"),
    Index("ix_tx_map_target", "target_code", "target_system"),
    Index("ix_tx_map_cm", "cm_id"),
)

# Which packages are loaded (and a claim row while one is loading, so that several
# worker processes starting together load the core package only once).
package = Table(
    "tx_package", metadata,
    Column("name", String(256), nullable=False),
    Column("version", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # loading | loaded | failed
    Column("loaded_at", String(40)),
    Column("counts", Text),
    PrimaryKeyConstraint("name", "version"),
)

# Staging rows of the native importers, keyed by code; resolved to ``seq`` with one
# INSERT ... SELECT join at the end so the importer never holds a code->seq map.
stage_edge = Table(
    "tx_stage_edge", metadata,
    Column("cs_id", Integer, nullable=False),
    Column("child_code", String(256), nullable=False),
    Column("parent_code", String(256), nullable=False),
    Index("ix_tx_stage_edge", "cs_id", "child_code"),
)

stage_designation = Table(
    "tx_stage_designation", metadata,
    Column("cs_id", Integer, nullable=False),
    Column("code", String(256), nullable=False),
    Column("language", String(32)),
    Column("use_system", String(512)),
    Column("use_code", String(128)),
    Column("value", Text, nullable=False),
    Index("ix_tx_stage_designation", "cs_id", "code"),
)

stage_property = Table(
    "tx_stage_property", metadata,
    Column("cs_id", Integer, nullable=False),
    Column("code", String(256), nullable=False),
    Column("prop", String(128), nullable=False),
    Column("value_type", String(16), nullable=False),
    Column("value", Text, nullable=False),
    Index("ix_tx_stage_property", "cs_id", "code", "prop"),
)
