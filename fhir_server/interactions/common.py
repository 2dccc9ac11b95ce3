"""Helpers shared by the interactions: body parsing, headers, Prefer, conditional matching."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fhir_server import authz, formats
from fhir_server.errors import Issue, OperationOutcomeError, bad_request, informational, not_found
from fhir_server.model import FhirRequest, FhirResponse, Headers, JsonDict
from fhir_server.repository import ConditionalCriteria, FhirRepository, StoredResource
from fhir_server.validation.primitives import ID_RE

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter

ETAG_RE = re.compile(r'^\s*(?:W/)?"?(\d+)"?\s*$')


def check_type(router: FhirRouter, resource_type: str) -> None:
    if resource_type not in router.resource_types:
        raise not_found(f"Unknown resource type {resource_type!r}")


def check_id(id: object) -> None:
    """``id`` as a client sent it: a URL segment or a body's ``id``, which may be any JSON value."""
    if not isinstance(id, str) or not ID_RE.fullmatch(id):
        raise bad_request(f"Invalid resource id {id!r}: ids are 1-64 of [A-Za-z0-9-.]")


def request_resource(req: FhirRequest) -> JsonDict:
    """The request's resource: given in-process, or parsed from the body per Content-Type."""
    if req.resource is not None:
        if not isinstance(req.resource, dict) or not isinstance(req.resource.get("resourceType"), str):
            raise bad_request("The body is not a FHIR resource (no resourceType)", code="structure")
        return req.resource
    if not req.body:
        raise bad_request("This interaction needs a resource in the request body", code="required")
    res = formats.parse_body(req.body, req.headers.get("content-type"))
    req.resource = res
    return res


def check_stored(req: FhirRequest, repo: FhirRepository, interaction: str, resource_type: str, id: str) -> None:
    """403 when the version a write replaces is outside the token's grant: a write is checked against what it
    overwrites as well as what it writes, so a patient's token cannot take over another patient's resource."""
    if req.context.unrestricted:
        return
    try:
        current = repo.read(resource_type, id)
    except OperationOutcomeError as exc:
        if exc.status in (404, 410):  # nothing there (or deleted): the body alone decides
            return
        raise
    authz.check_resource(req.context, interaction, current.resource or {})


def parse_etag(value: str | None) -> int | None:
    if value is None:
        return None
    m = ETAG_RE.match(value)
    if not m:
        raise bad_request(f"Malformed ETag {value!r}; expected W/\"<version>\"")
    return int(m.group(1))


def http_date(stored: StoredResource) -> str:
    return _http_date(math.floor(stored.last_updated.timestamp()))


@lru_cache(maxsize=256)  # whole seconds: the resources of one transaction share them
def _http_date(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC), usegmt=True)


def parse_http_date(value: str) -> Any:
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"Malformed HTTP date {value!r}") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def location(req: FhirRequest, stored: StoredResource) -> str:
    return f"{req.context.base_url.rstrip('/')}/{stored.resource_type}/{stored.id}/_history/{stored.version}"


def resource_headers(req: FhirRequest, stored: StoredResource, with_location: bool = False) -> Headers:
    h = Headers({"ETag": stored.etag, "Last-Modified": http_date(stored)})
    if with_location:
        h["Location"] = location(req, stored)
        h["Content-Location"] = h["Location"]
    return h


def prefer(req: FhirRequest, key: str) -> str | None:
    raw = req.headers.get("prefer") or ""
    for part in raw.split(";"):
        for item in part.split(","):
            k, _, v = item.strip().partition("=")
            if k.strip().lower() == key:
                return v.strip().strip('"').lower()
    return None


def write_response(req: FhirRequest, stored: StoredResource, status: int, outcome_text: str,
                   with_location: bool = True) -> FhirResponse:
    """Honours ``Prefer: return=minimal|representation|OperationOutcome``."""
    headers = resource_headers(req, stored, with_location=with_location)
    ret = prefer(req, "return") or "representation"
    if ret == "minimal":
        return FhirResponse(status, None, headers)
    if ret == "operationoutcome":
        return FhirResponse(status, informational(outcome_text), headers)
    return FhirResponse(status, stored.resource, headers)


def conditional_params(query: str | list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A conditional URL's search criteria; raise 400 when it has none."""
    params = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
    if not params:
        raise bad_request("A conditional request needs search criteria")
    return params


def if_none_exist_query(value: str) -> str:
    """The query of an ``If-None-Exist`` header or ``ifNoneExist`` element (``[Type?]query``, a ``?`` allowed first)."""
    return value.lstrip("?").split("?", 1)[-1]


def write_criteria(resource_type: str, query: str | list[tuple[str, str]]) -> ConditionalCriteria:
    """What ``FhirRepository.lock_criteria`` locks for a conditional write (the parameters in any order)."""
    return resource_type, tuple(sorted(conditional_params(query)))


def match_for_write(router: FhirRouter, repo: FhirRepository, resource_type: str,
                    query: str | list[tuple[str, str]]) -> list[StoredResource]:
    """``match_conditional`` for a conditional create or update, in ``repo``'s unit of work: the criteria are
    locked first, so a concurrent write with the same criteria cannot create a duplicate meanwhile."""
    repo.lock_criteria([write_criteria(resource_type, query)])
    return match_conditional(router, repo, resource_type, query)


def match_conditional(router: FhirRouter, repo: FhirRepository, resource_type: str, query: str | list[tuple[str, str]],
                      limit: int = 2) -> list[StoredResource]:
    """Resources matching a conditional URL's query; raise 400 when it has no criteria."""
    params = conditional_params(query)
    parsed = router.search_parser().parse([resource_type], params)
    parsed.query.count = limit
    parsed.query.total = "none"
    return repo.search(parsed.query).matches


def multiple_matches(what: str) -> OperationOutcomeError:
    return OperationOutcomeError(412, [Issue("error", "multiple-matches", f"{what}: criteria matched more than one"
                                             " resource")])
