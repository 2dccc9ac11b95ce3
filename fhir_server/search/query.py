"""Parsed search requests (what to match, sort, include, page) and their results.

The parser (``fhir_server/search/parser.py``) builds these from query
parameters with the registry; the storage layer compiles them to SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.repository import StoredResource
from fhir_server.search.registry import SearchParam


@dataclass
class Criterion:
    """One parameter occurrence: its comma-separated values are ORed; criteria are ANDed.

    ``kind``: ``param`` (a SearchParameter), ``id``, ``lastUpdated``, ``text``, ``content``,
    ``list``, ``chain`` (``param`` is the reference, ``sub`` is matched on ``target_type``),
    ``has`` (``sub`` is matched on ``target_type`` whose ``param`` references us),
    ``compartment`` (any of ``params`` references ``values[0]``), ``or`` (any of ``subs``).
    """

    kind: str
    resource_type: str
    param: SearchParam | None = None
    modifier: str | None = None
    values: list[str] = field(default_factory=list)
    target_type: str | None = None
    target_types: list[str] = field(default_factory=list)
    sub: Criterion | None = None
    subs: list[Criterion] = field(default_factory=list)
    params: list[SearchParam] = field(default_factory=list)
    value_set_codes: list[tuple[str | None, str]] | None = None  # :in / :below expansions


@dataclass
class SortKey:
    param: SearchParam | None  # None with name "_id" / "_lastUpdated"
    name: str
    descending: bool = False


@dataclass
class Include:
    source_type: str  # "*" allowed
    param: str  # "*" allowed
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False


@dataclass
class SearchQuery:
    resource_types: list[str] | None  # None: every type (system search)
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 20
    cursor: str | None = None
    offset: int = 0
    total: str = "default"  # none | estimate | accurate | default
    includes: list[Include] = field(default_factory=list)
    summary_count: bool = False
    max_include: int = 1000


@dataclass
class SearchResult:
    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    has_more: bool = False
