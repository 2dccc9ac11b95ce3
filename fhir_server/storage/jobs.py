"""Persisted background job state (``fhir_job``): the progress of ``$reindex`` and friends survives restarts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select, update

from fhir_server.storage import tables as T
from fhir_server.timeutil import to_us


class JobStore:
    """Persisted background job state (``fhir_job``), shared by ``$reindex`` and friends."""

    engine: Engine

    def create_job(self, job_id: str, kind: str, params: dict[str, Any], total: int | None) -> None:
        now = to_us(datetime.now(UTC))
        with self.engine.begin() as conn:
            conn.execute(insert(T.job).values(id=job_id, kind=kind, status="queued",
                                              params=orjson.dumps(params).decode(), progress=0, total=total,
                                              created=now, updated=now))

    def update_job(self, job_id: str, **values: Any) -> None:
        values["updated"] = to_us(datetime.now(UTC))
        with self.engine.begin() as conn:
            conn.execute(update(T.job).where(T.job.c.id == job_id).values(**values))

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self.engine.connect().execution_options(readonly=True) as conn:
            row = conn.execute(select(T.job).where(T.job.c.id == job_id)).first()
        return dict(row._mapping) if row else None

    def list_jobs(self, kind: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(T.job).where(T.job.c.kind == kind).order_by(T.job.c.created.desc())
                                .limit(100)).all()
        return [dict(r._mapping) for r in rows]
