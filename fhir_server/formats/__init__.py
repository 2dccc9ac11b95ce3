"""FHIR wire formats: body parsing, rendering and content negotiation.

The router calls only these four functions, so the JSON/XML details (and the
type model the XML mapping needs) stay behind one seam.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.errors import Issue, OperationOutcomeError, bad_request

JSON = "json"
XML = "xml"

_JSON_TYPES = {"application/fhir+json", "application/json", "text/json", "application/json+fhir"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir"}

# ``_format`` accepts the short names and the mime types (http.html#format).
_FORMAT_PARAM = {
    "json": JSON, "xml": XML,
    **{m: JSON for m in _JSON_TYPES},
    **{m: XML for m in _XML_TYPES},
}

_MEDIA_TYPES = {JSON: "application/fhir+json; charset=utf-8", XML: "application/fhir+xml; charset=utf-8"}


def _mime(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def format_of_content_type(content_type: str | None) -> str | None:
    """Map a Content-Type to ``json``/``xml``; ``None`` when it is not a FHIR format."""
    if not content_type:
        return None
    mime = _mime(content_type)
    if mime in _JSON_TYPES:
        return JSON
    if mime in _XML_TYPES:
        return XML
    return None


def parse_json(body: bytes) -> dict[str, Any]:
    if body[:3] == b"\xef\xbb\xbf":  # a UTF-8 BOM, as some Windows tools write
        body = body[3:]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Malformed JSON body: {exc}", code="structure") from exc
    if not isinstance(data, dict):
        raise bad_request("The JSON body must be an object (a FHIR resource)", code="structure")
    if not isinstance(data.get("resourceType"), str):
        raise bad_request("The JSON body has no resourceType", code="structure")
    return data


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Parse a request body into FHIR JSON; 400 if malformed, 415 if not a FHIR media type.

    Without a Content-Type the body is sniffed (``<`` means XML), as lenient
    clients such as curl without ``-H`` are common.
    """
    if body is None or not body.strip():
        raise bad_request("The request body is empty", code="required")
    fmt = format_of_content_type(content_type)
    if fmt is None:
        if content_type and _mime(content_type) not in ("", "application/octet-stream",
                                                        "application/x-www-form-urlencoded"):
            raise OperationOutcomeError(
                415, [Issue("error", "not-supported",
                            f"Unsupported media type '{_mime(content_type)}': use application/fhir+json "
                            "or application/fhir+xml")])
        fmt = XML if body.lstrip()[:1] == b"<" else JSON
    if fmt == JSON:
        return parse_json(body)
    from fhir_server.formats.xml import parse_xml

    return parse_xml(body)


def render(resource: dict[str, Any], fmt: str, pretty: bool = False) -> bytes:
    """Serialise a FHIR JSON resource in the negotiated format."""
    if fmt == XML:
        from fhir_server.formats.xml import to_xml

        return to_xml(resource, pretty=pretty)
    opts = orjson.OPT_NON_STR_KEYS
    if pretty:
        opts |= orjson.OPT_INDENT_2
    return orjson.dumps(resource, option=opts)


def _accept_entries(accept: str) -> list[tuple[float, int, str]]:
    entries: list[tuple[float, int, str]] = []
    for pos, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        mime = pieces[0].lower()
        if not mime:
            continue
        q = 1.0
        for p in pieces[1:]:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        entries.append((q, pos, mime))
    return entries


def negotiate(accept: str | None, format_param: str | None) -> str:
    """Pick ``json`` or ``xml``: ``_format`` wins over ``Accept``; 406 if nothing is acceptable."""
    if format_param:
        key = _mime(format_param.replace(" ", "+"))  # a '+' decoded as space in a query string
        fmt = _FORMAT_PARAM.get(key)
        if fmt is None:
            raise OperationOutcomeError(
                406, [Issue("error", "not-supported", f"Unsupported _format '{format_param}'")])
        return fmt
    if not accept or not accept.strip():
        return JSON
    best: tuple[float, int, str] | None = None
    chosen = JSON
    for q, pos, mime in _accept_entries(accept):
        if q <= 0:
            continue
        if mime in _JSON_TYPES or mime in ("*/*", "application/*"):
            fmt = JSON
        elif mime in _XML_TYPES or mime == "text/*":
            fmt = XML if mime != "text/*" else JSON
        else:
            continue
        # Higher q wins; on ties the earlier entry, but an explicit type beats a wildcard.
        rank = (q, 0 if "*" in mime else 1, -pos)
        if best is None or rank > (best[0], 0 if "*" in best[2] else 1, -best[1]):
            best = (q, pos, mime)
            chosen = fmt
    if best is None:
        raise OperationOutcomeError(
            406, [Issue("error", "not-supported",
                        f"None of the accepted media types is supported: {accept}")])
    return chosen


def media_type(fmt: str) -> str:
    """The Content-Type of a response in ``fmt``."""
    return _MEDIA_TYPES.get(fmt, _MEDIA_TYPES[JSON])


__all__ = ["JSON", "XML", "format_of_content_type", "media_type", "negotiate", "parse_body",
           "parse_json", "render"]
