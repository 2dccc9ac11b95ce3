"""Prefetch: render a service's templates, take what the client sent, fetch the rest.

A key the client omitted is fetched from ``fhirServer`` (HTTP, ``fhirAuthorization``
as bearer) or from our own repository when ``fhirServer`` is this server. A key
sent as ``null`` means the client looked and found nothing: it is not refetched.
Required data that cannot be had is a 412.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import requests

from cds_hooks.errors import precondition_failed

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
TOKEN_RE = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_USER_TOKENS = {"userPractitionerId": "Practitioner", "userPractitionerRoleId": "PractitionerRole",
                "userPatientId": "Patient", "userRelatedPersonId": "RelatedPerson"}


class FetchFailed(Exception):
    """The FHIR server could not answer (network, 401/403, 5xx)."""


class FhirSource(Protocol):
    def get(self, relative_url: str) -> JsonDict | None:
        """A resource for a read, a searchset Bundle for a search; None when the read is 404/410."""
        ...


def render(template: str, context: JsonDict) -> str | None:
    """Replace prefetch tokens; None when a token has no value in this call."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        token = m.group(1)
        if token in _USER_TOKENS:
            user = context.get("userId")
            if isinstance(user, str) and user.startswith(_USER_TOKENS[token] + "/"):
                return user.split("/", 1)[1]
            missing = True
            return ""
        if token.startswith("context."):
            parts = token.split(".")[1:]
            value = context.get(parts[0])
            if len(parts) == 1 and isinstance(value, str | int):
                return str(value)
            if len(parts) == 3 and isinstance(value, dict) and parts[2] == "id":
                # {{context.draftOrders.MedicationRequest.id}}: ids of that type in the bundle
                ids = [e["resource"]["id"] for e in value.get("entry") or []
                       if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                       and e["resource"].get("resourceType") == parts[1] and e["resource"].get("id")]
                if ids:
                    return ",".join(ids)
        missing = True
        return ""

    out = TOKEN_RE.sub(sub, template)
    return None if missing else out


class HttpFhirSource:
    """The client's FHIR server over HTTP, authorized by the bearer it handed us."""

    def __init__(self, base_url: str, access_token: str | None, timeout: float = 5.0,
                 session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.headers = {"Accept": "application/fhir+json"}
        if access_token:
            self.headers["Authorization"] = f"Bearer {access_token}"
        self.timeout = timeout
        self.session = session or requests.Session()

    def get(self, relative_url: str) -> JsonDict | None:
        try:
            r = self.session.get(f"{self.base}/{relative_url.lstrip('/')}", headers=self.headers,
                                 timeout=self.timeout)
        except requests.RequestException as exc:
            raise FetchFailed(str(exc)) from exc
        if r.status_code in (404, 410):
            return None
        if r.status_code != 200:
            raise FetchFailed(f"{relative_url}: HTTP {r.status_code}")
        try:
            body = r.json()
        except ValueError as exc:
            raise FetchFailed(f"{relative_url}: not JSON") from exc
        if isinstance(body, dict) and body.get("resourceType") == "Bundle":
            body = self._follow_pages(body)
        return body if isinstance(body, dict) else None

    def _follow_pages(self, bundle: JsonDict, max_pages: int = 10) -> JsonDict:
        entries = list(bundle.get("entry") or [])
        nxt = next((lk.get("url") for lk in bundle.get("link") or [] if lk.get("relation") == "next"), None)
        pages = 1
        while nxt and pages < max_pages:
            r = self.session.get(nxt, headers=self.headers, timeout=self.timeout)
            if r.status_code != 200:
                raise FetchFailed(f"paging: HTTP {r.status_code}")
            page = r.json()
            entries.extend(page.get("entry") or [])
            nxt = next((lk.get("url") for lk in page.get("link") or [] if lk.get("relation") == "next"), None)
            pages += 1
        return {**bundle, "entry": entries}


class LocalFhirSource:
    """Our own repository, in process, through the FHIR client API (no HTTP hop)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, relative_url: str) -> JsonDict | None:
        from fhir_server.errors import OperationOutcomeError

        path, _, query = relative_url.lstrip("/").partition("?")
        parts = [p for p in path.split("/") if p]
        try:
            if len(parts) == 2 and not query:
                return dict(self.client.read(parts[0], parts[1]))
            if len(parts) == 1:
                found = self.client.search(parts[0], parse_qsl(query, keep_blank_values=True))
                return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                        "entry": [{"resource": r} for r in found]}
        except OperationOutcomeError as exc:
            if exc.status in (404, 410):
                return None
            raise FetchFailed(str(exc)) from exc
        raise FetchFailed(f"unsupported prefetch query {relative_url!r}")


@dataclass
class PrefetchData:
    """The resolved prefetch of one call: key → resource, Bundle, or None (no data)."""

    values: dict[str, JsonDict | None] = field(default_factory=dict)
    fetched: set[str] = field(default_factory=set)

    def resource(self, key: str) -> JsonDict | None:
        v = self.values.get(key)
        if isinstance(v, dict) and v.get("resourceType") == "Bundle":
            found = self.resources(key)
            return found[0] if found else None
        return v

    def resources(self, key: str, resource_type: str | None = None) -> list[JsonDict]:
        v = self.values.get(key)
        if v is None:
            return []
        if v.get("resourceType") == "Bundle":
            out = [e["resource"] for e in v.get("entry") or []
                   if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        else:
            out = [v]
        if resource_type:
            out = [r for r in out if r.get("resourceType") == resource_type]
        return out


def resolve(templates: dict[str, str], required: frozenset[str], body: JsonDict,
            source_factory: Callable[[], FhirSource | None]) -> PrefetchData:
    """Build the PrefetchData of a call, fetching what is missing; 412 when required data is unobtainable."""
    sent = body.get("prefetch") or {}
    context = body.get("context") or {}
    data = PrefetchData()
    to_fetch: dict[str, str] = {}
    for key, template in templates.items():
        if key in sent:
            data.values[key] = sent[key]
            continue
        url = render(template, context)
        if url is None:
            if key in required:
                raise precondition_failed(f"prefetch {key!r} cannot be rendered from this context")
            continue
        to_fetch[key] = url
    if to_fetch:
        source = source_factory()
        if source is None:
            missing = sorted(k for k in to_fetch if k in required)
            if missing:
                raise precondition_failed(
                    f"required prefetch {missing} was not sent and no fhirServer can be queried")
        else:
            _fetch_all(source, to_fetch, data, required)
    for key in required:
        if data.values.get(key) is None:
            raise precondition_failed(f"required data {key!r} is not available for this patient")
    return data


def _fetch_all(source: FhirSource, to_fetch: dict[str, str], data: PrefetchData,
               required: frozenset[str]) -> None:
    def one(item: tuple[str, str]) -> tuple[str, JsonDict | None, str | None]:
        key, url = item
        try:
            return key, source.get(url), None
        except FetchFailed as exc:
            return key, None, str(exc)

    items = list(to_fetch.items())
    if isinstance(source, HttpFhirSource) and len(items) > 1:  # overlap network waits; local reads are ~1 ms
        with ThreadPoolExecutor(max_workers=min(4, len(items))) as pool:
            results = list(pool.map(one, items))
    else:
        results = [one(i) for i in items]
    for key, value, error in results:
        if error is not None:
            log.warning("prefetch %s failed: %s", key, error)
            if key in required:
                raise precondition_failed(f"required prefetch {key!r} could not be fetched")
            continue
        data.values[key] = value
        data.fetched.add(key)
