"""read and vread, with conditional reads (If-None-Match, If-Modified-Since)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server import authz
from fhir_server.errors import bad_request
from fhir_server.interactions.common import check_id, check_type, parse_etag, parse_http_date, resource_headers
from fhir_server.model import FhirRequest, FhirResponse
from fhir_server.repository import FhirRepository, StoredResource
from fhir_server.timeutil import from_us

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter


def _conditional(req: FhirRequest, stored: StoredResource) -> FhirResponse | None:
    """304 for If-None-Match / If-Modified-Since, else None."""
    inm = req.headers.get("if-none-match")
    if inm is not None and parse_etag(inm) == stored.version:
        return FhirResponse(304, None, resource_headers(req, stored))
    ims = req.headers.get("if-modified-since")
    if ims is not None and stored.last_updated.replace(microsecond=0) <= parse_http_date(ims):
        return FhirResponse(304, None, resource_headers(req, stored))
    return None


def _respond(req: FhirRequest, stored: StoredResource) -> FhirResponse:
    authz.check_resource(req.context, "read", stored.resource or {})
    return _conditional(req, stored) or FhirResponse(200, shape_resource(req, stored.resource or {}),
                                                     resource_headers(req, stored))


def shape_resource(req: FhirRequest, resource: dict) -> dict:
    """``_summary`` and ``_elements`` on a read."""
    summary, elements = req.param("_summary"), req.param("_elements")
    if summary and summary != "false":
        if summary == "count":
            raise bad_request("_summary=count applies to searches only")
        from fhir_server.formats.summary import apply_summary

        return apply_summary(resource, summary)
    if elements:
        from fhir_server.formats.summary import apply_elements

        return apply_elements(resource, [e.strip() for e in elements.split(",") if e.strip()])
    return resource


SHAPING = ("_summary", "_elements")


def read(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str, id: str) -> FhirResponse:
    check_type(router, resource_type)
    check_id(id)
    authz.check_interaction(req.context, "read", resource_type)
    read_raw = getattr(repo, "read_raw", None)
    fast = req.accepts_json_body and req.context.unrestricted and not any(req.param(p) for p in SHAPING)
    if read_raw is not None and fast:
        # Fast path: the stored JSON goes out as it is (it already carries id and meta).
        raw = read_raw(resource_type, id)
        if raw is not None:
            body, version, last_updated_us = raw
            stored = StoredResource(resource_type, id, version, from_us(last_updated_us), False, None)
            resp = _conditional(req, stored)
            if resp is not None:
                return resp
            return FhirResponse(200, None, resource_headers(req, stored),
                                json_body=body.encode() if isinstance(body, str) else body)
    return _respond(req, repo.read(resource_type, id))


def vread(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str, id: str,
          version: str) -> FhirResponse:
    check_type(router, resource_type)
    check_id(id)
    authz.check_interaction(req.context, "vread", resource_type)
    if not version.isdigit():
        raise bad_request(f"Invalid version id {version!r}")
    return _respond(req, repo.vread(resource_type, id, int(version)))
