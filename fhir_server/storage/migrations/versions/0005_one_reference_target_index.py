"""one reference-target index: ix_ref_target (target_id, target_type, hash_identity) replaces ix_ref_target
(hash_identity, target_id, target_type) and ix_ref_target_any (target_id, target_type)

Every query on a reference's target names its id (`subject=Patient/1`, chains, `_has`, compartments,
`_revinclude`), so the id leads; the parameter follows as the third column, and searches that name both
seek on all three. Two indexes each dirtied a page per reference row written: an HL7v2 message writes ~48
reference rows; the WAL pages per message fell 168 -> 146 and the HL7v2 writer's CPU per message 0.88x
(bench/RESULTS.md).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 21:40:00
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_ref_target', table_name='idx_reference')
    op.drop_index('ix_ref_target_any', table_name='idx_reference')
    op.create_index('ix_ref_target', 'idx_reference', ['target_id', 'target_type', 'hash_identity'], unique=False)
    if op.get_bind().dialect.name == 'sqlite':
        op.execute("PRAGMA analysis_limit=1000")
    op.execute("ANALYZE idx_reference")


def downgrade() -> None:
    op.drop_index('ix_ref_target', table_name='idx_reference')
    op.create_index('ix_ref_target_any', 'idx_reference', ['target_id', 'target_type'], unique=False)
    op.create_index('ix_ref_target', 'idx_reference', ['hash_identity', 'target_id', 'target_type'], unique=False)
