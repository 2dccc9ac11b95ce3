"""FHIR XML parsing/rendering against the official examples and hostile input."""

import json

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.formats import parse_body, render
from fhir_server.formats.xml import parse_xml, to_xml, xhtml_canonical
from terminology.packages import iter_resources

PATIENT_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment is fine -->
<Patient xmlns="http://hl7.org/fhir">
  <id value="pat1"/>
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Patient <b>Chalmers</b>&lt;x&gt;</p></div>
  </text>
  <contained>
    <Organization>
      <id value="org1"/>
      <name value="ACME"/>
    </Organization>
  </contained>
  <extension url="http://example.org/ext">
    <valueBoolean value="true"/>
  </extension>
  <active value="true"/>
  <name>
    <use value="official"/>
    <family value="Chalmers"/>
    <given value="Peter"/>
    <given id="g2">
      <extension url="http://example.org/note"><valueString value="no value"/></extension>
    </given>
    <given value="James"/>
  </name>
  <gender value="male"/>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1974-12-25T14:35:45-05:00"/>
    </extension>
  </birthDate>
  <deceasedBoolean value="false"/>
  <multipleBirthInteger value="2"/>
  <managingOrganization><reference value="#org1"/></managingOrganization>
</Patient>
"""

EXPECTED = {
    "resourceType": "Patient",
    "id": "pat1",
    "text": {"status": "generated",
             "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Patient <b>Chalmers</b>&lt;x&gt;</p></div>'},
    "contained": [{"resourceType": "Organization", "id": "org1", "name": "ACME"}],
    "extension": [{"url": "http://example.org/ext", "valueBoolean": True}],
    "active": True,
    "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", None, "James"],
              "_given": [None, {"id": "g2", "extension": [{"url": "http://example.org/note",
                                                            "valueString": "no value"}]}, None]}],
    "gender": "male",
    "birthDate": "1974-12-25",
    "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                  "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
    "deceasedBoolean": False,
    "multipleBirthInteger": 2,
    "managingOrganization": {"reference": "#org1"},
}


def test_parse_handwritten_patient():
    assert parse_body(PATIENT_XML, "application/fhir+xml") == EXPECTED
    assert parse_body(PATIENT_XML, None) == EXPECTED  # sniffed


def test_render_orders_by_definition_and_round_trips():
    shuffled = dict(reversed(list(EXPECTED.items())))
    xml = render(shuffled, "xml", True)
    assert xml.index(b"<id ") < xml.index(b"<text>") < xml.index(b"<contained>") < xml.index(b"<active")
    assert b'<extension url="http://example.org/ext">' in xml
    assert parse_xml(xml) == EXPECTED
    assert parse_xml(render(EXPECTED, "xml", False)) == EXPECTED


def test_attribute_whitespace_survives():
    res = {"resourceType": "Basic", "code": {"text": "line1\nline2\ttab \"q\" & <x>"}}
    assert parse_xml(to_xml(res)) == res


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x "boom">]><Patient xmlns="http://hl7.org/fhir">'
    b'<id value="&x;"/></Patient>',
    b'<?xml version="1.0"?><!DOCTYPE Patient SYSTEM "file:///etc/passwd"><Patient xmlns="http://hl7.org/fhir"/>',
    b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>',
])
def test_dtd_and_entities_are_refused(body):
    with pytest.raises(OperationOutcomeError) as exc:
        parse_body(body, "application/fhir+xml")
    assert exc.value.status == 400


@pytest.mark.parametrize("body", [
    b"<Patient xmlns='http://hl7.org/fhir'><id value='1'/>",  # not well-formed
    b"<Patient><id value='1'/></Patient>",  # no FHIR namespace
    b"<Nonsense xmlns='http://hl7.org/fhir'/>",  # unknown resource type
    b"<Patient xmlns='http://hl7.org/fhir'><foo value='1'/></Patient>",  # unknown element
    b"<Patient xmlns='http://hl7.org/fhir'><active value='yes'/></Patient>",  # bad boolean
    b"<Patient xmlns='http://hl7.org/fhir'><gender value='male'/><gender value='female'/></Patient>",
    b"<Patient xmlns='http://hl7.org/fhir'><multipleBirthInteger value='x'/></Patient>",
    b"<Patient xmlns='http://hl7.org/fhir'><active/></Patient>",  # no value, no extension
    b"<Patient xmlns='http://hl7.org/fhir'><active value='true' colour='red'/></Patient>",  # unknown attribute
    b"<Patient xmlns='http://hl7.org/fhir'><name use='official'/></Patient>",  # attribute on a datatype
    b"<Patient xmlns='http://hl7.org/fhir'><text><div>plain</div></text></Patient>",  # div not XHTML
])
def test_malformed_xml_is_400(body):
    with pytest.raises(OperationOutcomeError) as exc:
        parse_body(body, "application/fhir+xml")
    assert exc.value.status == 400


CONFORMANCE_TYPES = {
    "StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter", "ConceptMap", "OperationDefinition",
    "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide", "NamingSystem", "StructureMap",
    "GraphDefinition", "MessageDefinition", "TerminologyCapabilities",
}


def _norm(o):
    """Compare narratives as XHTML content, everything else exactly."""
    if isinstance(o, dict):
        return {k: (xhtml_canonical(v) if k == "div" and isinstance(v, str) else _norm(v)) for k, v in o.items()}
    if isinstance(o, list):
        return [_norm(x) for x in o]
    return o


BIG = 1_000_000  # the 11 examples over 1 MB are Bundles of conformance resources (~160 MB together)


def _examples(package, big):
    for res in iter_resources(package):
        if res["resourceType"] in CONFORMANCE_TYPES:
            continue
        if (len(json.dumps(res)) >= BIG) == big:
            yield res


def _round_trip(resources):
    count, failures = 0, []
    for res in resources:
        count += 1
        try:
            back = parse_xml(to_xml(res, pretty=count % 2 == 0))
        except OperationOutcomeError as exc:
            failures.append(f"{res['resourceType']}/{res.get('id')}: {exc}")
            continue
        if _norm(back) != _norm(res):
            failures.append(f"{res['resourceType']}/{res.get('id')}: differs")
    return count, failures


def test_round_trip_every_r4_example(r4_examples_package):
    """JSON -> XML -> JSON for the non-conformance examples of hl7.fhir.r4.examples under 1 MB."""
    count, failures = _round_trip(_examples(r4_examples_package, big=False))
    print(f"XML round trip: {count - len(failures)}/{count} examples equal")
    assert count >= 700
    assert not failures, failures[:10]


@pytest.mark.slow
def test_round_trip_big_example_bundles(r4_examples_package):
    """The 11 multi-megabyte conformance Bundles (~1 min on 2 cores), so marked slow."""
    count, failures = _round_trip(_examples(r4_examples_package, big=True))
    print(f"XML round trip (big bundles): {count - len(failures)}/{count} equal")
    assert count >= 10
    assert not failures, failures[:10]


def test_xml_rendering_is_valid_json_equivalent_for_bundle():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Observation", "status": "final",
                                                "code": {"text": "x"}, "valueQuantity": {"value": 1.5}}},
        {"resource": {"resourceType": "Parameters", "parameter": [
            {"name": "r", "resource": {"resourceType": "Patient", "active": False}},
            {"name": "v", "valueDecimal": 0.000001}]}}]}
    back = parse_xml(render(bundle, "xml", True))
    assert json.dumps(back, sort_keys=True) == json.dumps(bundle, sort_keys=True)
