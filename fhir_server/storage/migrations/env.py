from __future__ import annotations

from alembic import context

from fhir_server.storage.engine import lock_schema
from fhir_server.storage.tables import metadata

config = context.config
engine = config.attributes.get("engine")


def run() -> None:
    if engine is None:
        from sqlalchemy import create_engine

        eng = create_engine(config.get_main_option("sqlalchemy.url") or "")
    else:
        eng = engine
    with eng.connect() as conn:
        conn.execution_options(write=True)  # SQLite: BEGIN IMMEDIATE even for alembic's first read
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            lock_schema(conn)  # pods or workers starting together on a new database migrate one at a time
            context.run_migrations()
        conn.commit()


run()
