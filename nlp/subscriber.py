"""After-commit subscriber: new or changed DocumentReferences are processed on a background thread.

Writes happen outside the request that created the note (the event fires after commit), and the
replace-by-tag transaction makes a second run over the same note idempotent.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from nlp.notes import NoteTextError
from nlp.service import NlpService

log = logging.getLogger(__name__)


class NoteWorker:
    def __init__(self, service: NlpService, client: Any) -> None:
        self.service = service
        self.client = client
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.processed = 0
        self.failed = 0

    def on_event(self, event: Any) -> None:
        if event.resource_type != "DocumentReference" or event.action not in ("create", "update"):
            return
        self._queue.put((event.resource_type, event.id))
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="nlp-note-worker", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                rtype, rid = self._queue.get(timeout=5.0)
            except queue.Empty:
                return
            try:
                self.process(rtype, rid)
                self.processed += 1
            except NoteTextError as exc:
                log.info("NLP skipped %s/%s: %s", rtype, rid, exc)
            except Exception:  # noqa: BLE001 - one bad note must not stop the worker
                self.failed += 1
                log.exception("NLP failed for %s/%s", rtype, rid)
            finally:
                self._queue.task_done()

    def process(self, rtype: str, rid: str) -> None:
        note = self.client.read(rtype, rid)
        if note.get("status") == "entered-in-error":
            return
        result = self.service.extract_note(note, self.client, bundle_type="transaction")
        if result.patient_ref:
            self.service.persist(result, self.client)

    def join(self) -> None:
        """Block until every queued note is processed (tests, graceful shutdown)."""
        self._queue.join()
