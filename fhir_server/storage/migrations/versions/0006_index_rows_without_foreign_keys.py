"""index rows without foreign keys: the idx_* tables no longer reference fhir_resource (PostgreSQL)

Index rows are derived data: the repository writes and deletes them with their resource in one transaction,
`$reindex` rebuilds them, and nothing deletes resource rows (a FHIR delete is a new version). On PostgreSQL
each key's trigger looked up the parent row (`SELECT ... FOR KEY SHARE`) for every index row written, ~160
per HL7v2 message: dropping them took the server's CPU per message from 3.9-4.5 to 3.0-3.1 ms and HL7v2
ingest 1.09-1.32x (bench/RESULTS.md). `fhir_resource_history` keeps its key: a version is not derived.

SQLite cannot drop a constraint without copying the table (minutes at startup for a large database), and its
check (one B-tree probe of the parent per row) measured nothing: SQLite databases keep the keys 0001 made.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

INDEX_TABLES = ('idx_string', 'idx_token', 'idx_reference', 'idx_date', 'idx_number', 'idx_quantity', 'idx_uri',
                'idx_composite', 'idx_text')


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    inspector = sa.inspect(bind)
    for table in INDEX_TABLES:
        for fk in inspector.get_foreign_keys(table):
            if fk['referred_table'] == 'fhir_resource' and fk['name']:
                op.drop_constraint(fk['name'], table, type_='foreignkey')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in INDEX_TABLES:
        op.create_foreign_key(f'{table}_res_pk_fkey', table, 'fhir_resource', ['res_pk'], ['pk'], ondelete='CASCADE')
