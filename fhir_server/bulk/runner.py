"""The background worker that turns export jobs into NDJSON files.

One daemon thread per process polls the job table; a job whose worker stopped
heart-beating (process restart) is restarted from scratch, so output is never
half-written. Every resource passes ``authz.check_resource`` with the
requester's context, so an export never returns more than a search would.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from fhir_server import authz
from fhir_server.bulk import jobs
from fhir_server.errors import OperationOutcomeError
from fhir_server.repository import StoredResource

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 500  # resources between heartbeats / cancellation checks
STALE_AFTER = 60.0  # seconds without heartbeat before another worker resumes a running job


class Cancelled(Exception):
    pass


class BulkRunner:
    """Runs export jobs of ``router`` writing files under ``data_dir/bulk/<job id>/``."""

    def __init__(
        self,
        router: Any,
        data_dir: str | os.PathLike[str],
        poll_interval: float = 1.0,
        stale_after: float = STALE_AFTER,
        idle_exit: float = 30.0,
    ) -> None:
        self.router = router
        self.repo: Any = router.repo
        self.root = Path(data_dir) / "bulk"
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.worker_id = uuid.uuid4().hex
        self.idle_exit = idle_exit
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the worker thread if it is not running (it exits after ``idle_exit`` s without work)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="bulk-export", daemon=True)
                self._thread.start()

    def resume_pending(self) -> None:
        """At start-up: pick up jobs a previous process left queued or running."""
        if jobs.pending(self.repo, self.stale_after):
            self.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def notify(self) -> None:
        self.start()
        self._wake.set()

    def _loop(self) -> None:
        idle_since = time.monotonic()
        while not self._stop.is_set():
            try:
                todo = jobs.pending(self.repo, self.stale_after)
                for job_id in todo:
                    if self._stop.is_set():
                        return
                    self.run(job_id)
            except Exception:  # noqa: BLE001 - keep the worker alive
                log.exception("bulk export worker loop failed")
                todo = []
            if todo:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.idle_exit:
                with self._lock:  # a notify() racing with this exit starts a new thread
                    self._thread = None
                return
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    # ---------------------------------------------------------------- one job
    def run(self, job_id: str) -> None:
        loaded = jobs.load(self.repo, job_id)
        if loaded is None or loaded[0]["status"] not in jobs.ACTIVE:
            return
        _, req = loaded
        req.worker, req.heartbeat, req.output, req.errors = self.worker_id, time.time(), [], []
        jobs.save(self.repo, job_id, req, status="running", progress=0, error=None)
        out_dir = self.job_dir(job_id)
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._export(job_id, req, out_dir)
        except Cancelled:
            shutil.rmtree(out_dir, ignore_errors=True)
            return
        except Exception as exc:  # noqa: BLE001 - recorded on the job
            log.exception("bulk export %s failed", job_id)
            jobs.save(self.repo, job_id, req, status="failed", error=str(exc)[:2000])
            return
        jobs.save(self.repo, job_id, req, status="completed")

    def _check(self, job_id: str, req: jobs.ExportRequest, done: int) -> None:
        job = self.repo.get_job(job_id)
        if job is None or job["status"] == "cancelled":
            raise Cancelled()
        req.heartbeat = time.time()
        jobs.save(self.repo, job_id, req, progress=done)

    def _export(self, job_id: str, req: jobs.ExportRequest, out_dir: Path) -> None:
        ctx = req.request_context()
        cohort = self._cohort(req)
        since = datetime.fromisoformat(req.since.replace("Z", "+00:00")) if req.since else None
        done = 0
        for rtype in self._types(req):
            allowed_ids = self._filtered_ids(rtype, req.type_filters.get(rtype))
            path = out_dir / f"{rtype}.ndjson"
            count = 0
            with path.open("wb") as fh:
                for st in self._stream(rtype, since):
                    res = st.resource
                    if res is None or (allowed_ids is not None and st.id not in allowed_ids):
                        continue
                    if cohort is not None and not (authz.compartment_patients(res) & cohort):
                        continue
                    try:
                        authz.check_resource(ctx, "search", res)
                    except OperationOutcomeError:
                        continue
                    fh.write(orjson.dumps(res) + b"\n")
                    count += 1
                    done += 1
                    if done % HEARTBEAT_EVERY == 0:
                        self._check(job_id, req, done)
            if count:
                req.output.append({"type": rtype, "file": path.name, "count": count})
            else:
                path.unlink()
            self._check(job_id, req, done)

    def _stream(self, rtype: str, since: datetime | None) -> Iterator[StoredResource]:
        return iter(self.repo.iter_current([rtype], since))

    def _types(self, req: jobs.ExportRequest) -> list[str]:
        present = (
            sorted(self.repo.count_by_type())
            if hasattr(self.repo, "count_by_type")
            else sorted(self.router.resource_types)
        )
        if req.level != "system":
            present = [t for t in present if t in authz.PATIENT_COMPARTMENT or t == "Patient"]
        types = [t for t in present if req.types is None or t in req.types]
        ctx = req.request_context()
        granted = []
        for t in types:
            try:
                authz.check_interaction(ctx, "search", t)
            except OperationOutcomeError:
                continue
            granted.append(t)
        return granted

    def _cohort(self, req: jobs.ExportRequest) -> set[str] | None:
        """Patient ids whose data is exported; None for everything (system level)."""
        if req.level == "system":
            return None
        if req.patients is not None:  # checked at kick-off: existing patients (group members, for a Group)
            return set(req.patients)
        if req.level == "patient":
            return {st.id for st in self.repo.iter_current(["Patient"])}
        return jobs.group_patients(self.repo.read("Group", req.group or "").resource or {})

    def _filtered_ids(self, rtype: str, filters: list[str] | None) -> set[str] | None:
        """Ids matching any of the type's ``_typeFilter`` queries (OR), via the search engine."""
        if not filters:
            return None
        from urllib.parse import parse_qsl

        ids: set[str] = set()
        for query in filters:
            parsed = self.router.search_parser().parse([rtype], parse_qsl(query, keep_blank_values=True))
            q = parsed.query
            q.count, q.includes, q.total = 1000, [], "none"
            while True:
                result = self.repo.search(q)
                ids.update(st.id for st in result.matches)
                if not result.next_cursor:
                    break
                q.cursor = result.next_cursor
        return ids
