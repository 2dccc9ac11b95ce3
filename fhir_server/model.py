"""Transport-free request/response types of the FHIR core (no Flask here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class RequestContext:
    """Who is calling and what they may do.

    ``scopes`` holds SMART scopes (v1 or v2 syntax); ``None`` means the caller is
    not restricted by scopes (authorization off, or an internal system caller
    such as the HL7v2 pipeline).
    """

    base_url: str = "http://localhost:8080/fhir"
    scopes: frozenset[str] | None = None
    subject: str | None = None
    client_id: str | None = None
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    token_id: str | None = None

    @property
    def unrestricted(self) -> bool:
        return self.scopes is None


SYSTEM_CONTEXT = RequestContext()


class Headers(dict[str, str]):
    """Case-insensitive header map (keys stored lower-case)."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        super().__init__()
        if items is None:
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        for k, v in pairs:
            self[k] = v

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass
class FhirRequest:
    """A FHIR REST call relative to the base URL.

    ``path`` has no leading slash (``Patient/1/_history/2``; ``""`` is the base).
    Callers inside the process pass ``resource`` (already parsed JSON); HTTP
    adapters pass ``body`` bytes plus ``Content-Type`` and the router parses them.
    """

    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: Headers | dict[str, str] = field(default_factory=Headers)  # made a Headers in __post_init__
    body: bytes | None = None
    resource: JsonDict | None = None
    context: RequestContext = SYSTEM_CONTEXT
    accepts_json_body: bool = False  # the caller can take FhirResponse.json_body instead of .resource (HTTP)
    # in-process callers only (never set from HTTP): work done before the transaction, see interactions/prepared.py
    prepared: Any = None  # a PreparedBundle for a transaction Bundle
    prevalidated: bool = False  # this write's resource already passed validation

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self.path = self.path.strip("/")
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers)

    def param(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return None


@dataclass
class FhirResponse:
    """Status, headers and either a FHIR resource or raw bytes (Binary, NDJSON)."""

    status: int
    resource: JsonDict | None = None
    headers: Headers | dict[str, str] = field(default_factory=Headers)  # made a Headers in __post_init__
    raw: bytes | None = None
    raw_content_type: str | None = None
    json_body: bytes | None = None  # the resource already serialized as FHIR JSON (the read fast path)

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers)

    def get_resource(self) -> JsonDict | None:
        """The resource, parsing ``json_body`` when the fast path left only bytes."""
        if self.resource is None and self.json_body is not None:
            import orjson

            self.resource = orjson.loads(self.json_body)
        return self.resource
