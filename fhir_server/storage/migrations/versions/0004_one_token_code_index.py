"""one token index for `code` and `system|code`: ix_token_code replaces ix_token_value and ix_token_sys_value

At 1M resources each of the two wrote ~1.0 WAL page per resource loaded (a row lands on its own leaf
page once an index outgrows a transaction). `system|code` is a seek on (code hash, system|code hash) of
the one index; `code` alone a seek on its first column.

PostgreSQL estimates two equality conditions as independent, so for `system|code` it expected ~170 rows of
a code that 27,000 Observations carry at 1M, and picked a plan that took 2x as long (and `_has` over it
4x); the system|code hash determines the code hash, which extended statistics tell the planner.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 03:50:00
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_token_code', 'idx_token', ['hash_value', 'hash_sys_value', 'res_pk'], unique=False)
    op.drop_index('ix_token_value', table_name='idx_token')
    op.drop_index('ix_token_sys_value', table_name='idx_token')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("CREATE STATISTICS IF NOT EXISTS st_token_code_system (dependencies) "
                   "ON hash_value, hash_sys_value FROM idx_token")
    # statistics for the new index now, so the planner does not guess until the next full ANALYZE
    if op.get_bind().dialect.name == 'sqlite':
        op.execute("PRAGMA analysis_limit=1000")
    op.execute("ANALYZE idx_token")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP STATISTICS IF EXISTS st_token_code_system")
    op.create_index('ix_token_sys_value', 'idx_token', ['hash_sys_value', 'res_pk'], unique=False)
    op.create_index('ix_token_value', 'idx_token', ['hash_value', 'res_pk'], unique=False)
    op.drop_index('ix_token_code', table_name='idx_token')
