"""SQLite: the FTS5 table is written by the repository's flush, not by triggers on idx_text

An AFTER INSERT trigger feeding FTS5 made ingest slow down as a writing process went on: 1,643 -> 844
resources/s by 412k resources, against 1,495/s at 412k with one explicit FTS5 insert per flush
(bench/RESULTS.md, search). The FTS5 content stays the same; only who writes it changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 01:20:00
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS idx_text_ai")
        op.execute("DROP TRIGGER IF EXISTS idx_text_ad")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE TRIGGER idx_text_ai AFTER INSERT ON idx_text BEGIN INSERT INTO idx_text_fts(rowid, "
                   "narrative, content) VALUES (new.res_pk, new.narrative, new.content); END")
        op.execute("CREATE TRIGGER idx_text_ad AFTER DELETE ON idx_text BEGIN INSERT INTO idx_text_fts("
                   "idx_text_fts, rowid, narrative, content) VALUES ('delete', old.res_pk, old.narrative, "
                   "old.content); END")
