"""Content negotiation and JSON body parsing through the router-facing API."""

import json

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.formats import media_type, negotiate, parse_body, render


@pytest.mark.parametrize(
    ("accept", "fmt", "expected"),
    [
        (None, None, "json"),
        ("", None, "json"),
        ("application/fhir+json", None, "json"),
        ("application/fhir+xml", None, "xml"),
        ("application/xml", None, "xml"),
        ("*/*", None, "json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None, "xml"),
        ("application/fhir+xml;q=0.5, application/fhir+json;q=0.9", None, "json"),
        ("application/fhir+json;q=0.5, application/fhir+xml", None, "xml"),
        ("application/fhir+xml;q=0, */*;q=0.1", None, "json"),
        ("application/fhir+xml", "json", "json"),
        (None, "xml", "xml"),
        (None, "application/fhir+xml", "xml"),
        (None, "application/fhir json", "json"),  # '+' decoded as a space
        (None, "text/xml", "xml"),
        (None, "application/json", "json"),
        (None, "application/fhir+json; fhirVersion=4.0", "json"),
    ],
)
def test_negotiate(accept, fmt, expected):
    assert negotiate(accept, fmt) == expected


@pytest.mark.parametrize(("accept", "fmt"), [("image/png", None), ("text/plain;q=1, application/json;q=0", None),
                                             (None, "html"), (None, "turtle")])
def test_negotiate_406(accept, fmt):
    with pytest.raises(OperationOutcomeError) as exc:
        negotiate(accept, fmt)
    assert exc.value.status == 406
    assert exc.value.outcome()["resourceType"] == "OperationOutcome"


def test_parse_json_body():
    body = json.dumps({"resourceType": "Patient", "id": "x", "active": True}).encode()
    for ct in ("application/fhir+json", "application/json; charset=utf-8", "application/fhir+json;fhirVersion=4.0",
               None):
        assert parse_body(body, ct) == {"resourceType": "Patient", "id": "x", "active": True}


@pytest.mark.parametrize("body", [b"{", b"[]", b'"x"', b"{}", b'{"resourceType": 3}', b"   ", b"\xff\xfe"])
def test_parse_malformed_json_is_400(body):
    with pytest.raises(OperationOutcomeError) as exc:
        parse_body(body, "application/fhir+json")
    assert exc.value.status == 400


@pytest.mark.parametrize("ct", ["text/plain", "image/png", "application/json-patch+json", "multipart/form-data"])
def test_unsupported_media_type_is_415(ct):
    with pytest.raises(OperationOutcomeError) as exc:
        parse_body(b'{"resourceType":"Patient"}', ct)
    assert exc.value.status == 415


def test_render_json_compact_and_pretty():
    res = {"resourceType": "Patient", "name": [{"family": "Chalmers"}]}
    compact = render(res, "json", False)
    pretty = render(res, "json", True)
    assert json.loads(compact) == res == json.loads(pretty)
    assert b"\n" not in compact and b"\n  " in pretty


def test_media_type():
    assert media_type("json").startswith("application/fhir+json")
    assert media_type("xml").startswith("application/fhir+xml")
