"""Hostile input never crashes validation, XML or summary code: issues or a 4xx, never an exception."""

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.errors import OperationOutcomeError
from fhir_server.formats import parse_body, render
from fhir_server.formats.summary import apply_elements, apply_summary
from fhir_server.validation import validate_resource

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(["id", "meta", "text", "contained", "extension", "name", "_name", "gender", "_gender",
                        "birthDate", "deceasedBoolean", "deceasedDateTime", "link", "contact", "photo",
                        "managingOrganization", "resourceType", "multipleBirthInteger", "entry", "bogus"])

BASE = {"resourceType": "Patient", "id": "p1", "name": [{"family": "X", "given": ["A"]}],
        "contained": [{"resourceType": "Organization", "id": "o"}], "managingOrganization": {"reference": "#o"}}


def test_bundle_with_a_non_array_entry_is_an_issue_not_a_crash():
    """Found by test_random_patients: ``"entry": true`` on a Bundle raised TypeError (a 500 on a write)."""
    for entry in (True, 3, "x", {"resource": {}}):
        issues = validate_resource({"resourceType": "Bundle", "type": "document", "entry": entry}, strict=True)
        assert any(i.severity == "error" and "entry" in " ".join(i.expression) for i in issues), entry


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, json_values, max_size=5), st.sampled_from(["Patient", "Bundle", "Observation"]))
def test_random_patients(patch, rtype):
    res = copy.deepcopy(BASE)
    res.update(patch)
    res["resourceType"] = res.get("resourceType") if isinstance(res.get("resourceType"), str) else rtype
    validate_resource(res, strict=True)
    validate_resource(res)
    apply_summary(res, "true")
    apply_summary(res, "text")
    apply_elements(res, ["name", "gender"])
    try:
        xml = render(res, "xml", True)
    except OperationOutcomeError as exc:
        assert exc.status == 400
        return
    try:
        parse_body(xml, "application/fhir+xml")
    except OperationOutcomeError as exc:  # invalid content may not survive XML, but it fails cleanly
        assert exc.status == 400


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bodies(body):
    for ct in ("application/fhir+json", "application/fhir+xml", None):
        try:
            res = parse_body(body, ct)
        except OperationOutcomeError as exc:
            assert exc.status in (400, 415)
            continue
        validate_resource(res)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>/=\"' abcdefghijklmnopqrstuvwxyz:&;#x", max_size=120))
def test_random_xml_fragments(fragment):
    body = f'<Patient xmlns="http://hl7.org/fhir">{fragment}</Patient>'.encode()
    try:
        parse_body(body, "application/xml")
    except OperationOutcomeError as exc:
        assert exc.status == 400
