"""The one storage interface (DESIGN.md): FHIR JSON in, FHIR JSON out.

Only ``fhir_server/storage/`` implements it with SQLAlchemy; everything else
(router, interactions, HL7v2, NLP, CDS) talks to this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from fhir_server.model import JsonDict

if TYPE_CHECKING:
    from fhir_server.errors import OperationOutcomeError
    from fhir_server.search.query import SearchQuery, SearchResult


class PartialStepWrite(Exception):
    """A step of a unit of work (``savepoint``) failed while writing, without a savepoint under it: the
    database may hold part of the step, so the caller must roll the whole unit of work back."""


@dataclass
class StoredResource:
    resource_type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    resource: JsonDict | None  # None for a delete tombstone
    method: str = "PUT"  # how this version was made: POST / PUT / PATCH / DELETE

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass
class HistoryPage:
    entries: list[StoredResource]
    total: int | None
    next_offset: int | None = None


@dataclass
class WriteResult:
    stored: StoredResource
    created: bool
    changed: bool = True  # False when an update carried no change (no new version)
    events: list[object] = field(default_factory=list)


# A conditional write's criteria: (resource type, its search parameters sorted), what ``lock_criteria`` locks
ConditionalCriteria = tuple[str, tuple[tuple[str, str], ...]]


class FhirRepository(Protocol):
    """Versioned storage of FHIR resources plus their search index.

    Every write runs in one DB transaction that writes the current row, the
    history row and the index rows. Inside ``unit_of_work()`` several writes
    share that transaction (FHIR transaction bundles).
    """

    def read(self, resource_type: str, id: str) -> StoredResource:
        """Current version; raises not_found (404) or gone (410)."""
        ...

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource: ...

    def create(self, resource: JsonDict, *, id: str | None = None) -> WriteResult: ...

    def update(self, resource: JsonDict, *, if_match: int | None = None,
               allow_create: bool = True) -> WriteResult: ...

    def delete(self, resource_type: str, id: str, *, if_match: int | None = None) -> WriteResult | None:
        """Writes a tombstone version; None when the resource did not exist."""
        ...

    def history(self, resource_type: str | None, id: str | None, *, since: datetime | None,
                at: datetime | None, count: int, offset: int) -> HistoryPage: ...

    def search(self, query: SearchQuery) -> SearchResult: ...

    def replace_meta(self, resource_type: str, id: str, change: Callable[[JsonDict], JsonDict]) -> StoredResource:
        """The current version with its ``meta`` replaced by ``change(resource)`` in place, index rows included:
        no new version (``$meta-add``/``$meta-delete``); raises not_found (404) or gone (410)."""
        ...

    def meta_in_use(self, resource_types: list[str] | None) -> JsonDict:
        """The tags, security labels (``{system, code}``) and profiles of current resources of these types
        (all when None), as a ``Meta``: from the ``_tag``/``_security``/``_profile`` index rows."""
        ...

    def unit_of_work(self) -> AbstractContextManager[FhirRepository]:
        """A repository bound to one DB transaction (commit on exit, rollback on error). A write that lost a race
        with a concurrent transaction (the same new id created twice, a deadlock) raises a 409 conflict."""
        ...

    def failure_outcome(self, exc: Exception) -> OperationOutcomeError | None:
        """The answer for a storage error a client can meet through no fault of its own: a lost race with a
        concurrent transaction (409, retry), the database busy past the configured wait or unreachable (503
        with Retry-After). None for anything else (a bug)."""
        ...

    def lock_criteria(self, all_criteria: list[ConditionalCriteria]) -> None:
        """Inside a unit of work, before the searches of conditional writes: until
        it ends, other transactions' conditional writes with the same criteria wait for it, so the second one
        finds what the first created instead of creating a duplicate."""
        ...

    def iter_current(self, resource_types: list[str] | None = None,
                     since: datetime | None = None) -> Iterator[StoredResource]:
        """Streams current, non-deleted resources (bulk export, reindex)."""
        ...
