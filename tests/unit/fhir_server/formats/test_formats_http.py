"""Formats through the real HTTP server: XML in and out, _format, Accept, _summary, _elements, 406/415."""

import requests

from fhir_server.formats.xml import parse_xml

PATIENT_XML = b"""<Patient xmlns="http://hl7.org/fhir">
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">Peter Chalmers</div></text>
  <active value="true"/>
  <name><family value="Chalmers"/><given value="Peter"/></name>
  <gender value="male"/>
  <birthDate value="1974-12-25"/>
</Patient>"""


def test_xml_round_trip_over_http(live_server):
    base = live_server.base
    r = requests.post(f"{base}/Patient", data=PATIENT_XML, timeout=30,
                      headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"})
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"].startswith("application/fhir+xml")
    created = parse_xml(r.content)
    pid = created["id"]
    assert created["name"] == [{"family": "Chalmers", "given": ["Peter"]}]

    as_json = requests.get(f"{base}/Patient/{pid}", timeout=30).json()
    assert as_json["birthDate"] == "1974-12-25" and as_json["active"] is True
    as_xml = requests.get(f"{base}/Patient/{pid}?_format=xml&_pretty=true", timeout=30)
    assert as_xml.headers["Content-Type"].startswith("application/fhir+xml")
    assert b"\n  <" in as_xml.content
    assert parse_xml(as_xml.content) == as_json

    summary = requests.get(f"{base}/Patient/{pid}?_summary=true", timeout=30).json()
    assert "text" not in summary and summary["name"] and summary["meta"]["tag"][-1]["code"] == "SUBSETTED"
    elements = requests.get(f"{base}/Patient/{pid}?_elements=gender", timeout=30).json()
    assert elements["gender"] == "male" and "name" not in elements and elements["active"] is True  # modifier


def test_negotiation_errors_over_http(live_server):
    base = live_server.base
    r = requests.get(f"{base}/Patient", headers={"Accept": "image/png"}, timeout=30)
    assert r.status_code == 406 and r.json()["resourceType"] == "OperationOutcome"
    r = requests.post(f"{base}/Patient", data=b"gender=male", timeout=30,
                      headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"
    evil = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>')
    r = requests.post(f"{base}/Patient", data=evil, headers={"Content-Type": "application/fhir+xml"}, timeout=30)
    assert r.status_code == 400 and "root:" not in r.text  # never expanded
