"""After-commit events: subscribers see only committed changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.model import JsonDict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResourceChanged:
    action: str  # "create" | "update" | "delete"
    resource_type: str
    id: str
    version: int
    resource: JsonDict | None  # None for delete


Subscriber = Callable[[ResourceChanged], None]


class EventBus:
    """Synchronous fan-out; a failing subscriber is logged, never breaks the write."""

    def __init__(self) -> None:
        self._subs: list[tuple[str | None, Subscriber]] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber, resource_type: str | None = None) -> None:
        with self._lock:
            self._subs.append((resource_type, fn))

    def publish(self, event: ResourceChanged) -> None:
        for rtype, fn in list(self._subs):
            if rtype is not None and rtype != event.resource_type:
                continue
            try:
                fn(event)
            except Exception:  # noqa: BLE001 - subscribers must not break writes
                log.exception("event subscriber %r failed for %s/%s", fn, event.resource_type, event.id)
