"""The operation handlers as the router calls them: (router, FhirRequest, type, id) -> FhirResponse."""

from __future__ import annotations

import json

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.model import FhirRequest
from terminology.web import make_handler, sync_event

GENDER = "http://hl7.org/fhir/administrative-gender"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"


def _call(svc, op, rt, query=None, body=None, id=None, read=None):
    req = FhirRequest("POST" if body else "GET", f"{rt}/${op}", query=query or [],
                      body=json.dumps(body).encode() if body else None)
    return make_handler(svc, op, read)(None, req, rt, id)


def _p(params, name):
    return [p for p in params["parameter"] if p["name"] == name]


def test_lookup_get(core_svc):
    r = _call(core_svc, "lookup", "CodeSystem", [("system", GENDER), ("code", "male")])
    assert r.status == 200
    assert _p(r.resource, "display") == [{"name": "display", "valueString": "Male"}]


def test_lookup_post_coding_with_parent_property(core_svc):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                           "code": "AMB"}},
        {"name": "property", "valueCode": "parent"}]}
    r = _call(core_svc, "lookup", "CodeSystem", body=body)
    props = _p(r.resource, "property")
    assert props == [{"name": "property", "part": [
        {"name": "code", "valueCode": "parent"}, {"name": "value", "valueCode": "_ActEncounterCode"},
        {"name": "description", "valueString": "ActEncounterCode"}]}]


def test_validate_code_valueset_codeableconcept(core_svc):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": GENDER_VS},
        {"name": "codeableConcept", "valueCodeableConcept": {"coding": [
            {"system": "http://example.org/x", "code": "m"}, {"system": GENDER, "code": "male"}]}}]}
    r = _call(core_svc, "validate-code", "ValueSet", body=body)
    assert _p(r.resource, "result") == [{"name": "result", "valueBoolean": True}]
    r = _call(core_svc, "validate-code", "ValueSet", [("url", GENDER_VS), ("system", GENDER), ("code", "x")])
    assert _p(r.resource, "result")[0]["valueBoolean"] is False
    assert _p(r.resource, "message")


def test_validate_code_codesystem_instance(core_svc):
    instance = {"resourceType": "CodeSystem", "id": "administrative-gender", "url": GENDER}
    r = _call(core_svc, "validate-code", "CodeSystem", [("code", "female"), ("display", "Female")],
              id="administrative-gender", read=lambda rt, i: instance)
    assert _p(r.resource, "result")[0]["valueBoolean"] is True


def test_subsumes_and_translate(core_svc):
    r = _call(core_svc, "subsumes", "CodeSystem", [("system", "http://terminology.hl7.org/CodeSystem/v3-ActCode"),
                                                    ("codeA", "_ActEncounterCode"), ("codeB", "EMER")])
    assert r.resource["parameter"] == [{"name": "outcome", "valueCode": "subsumes"}]
    r = _call(core_svc, "translate", "ConceptMap", [("url", "http://hl7.org/fhir/ConceptMap/cm-address-use-v2"),
                                                     ("system", "http://hl7.org/fhir/address-use"),
                                                     ("code", "home")])
    assert _p(r.resource, "result")[0]["valueBoolean"] is True
    match = _p(r.resource, "match")[0]["part"]
    assert {"name": "concept", "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v2-0190",
                                               "code": "H"}} in match
    rev = _call(core_svc, "translate", "ConceptMap", [("system", "http://terminology.hl7.org/CodeSystem/v2-0190"),
                                                       ("code", "BA"), ("reverse", "true")])
    coding = [p for p in _p(rev.resource, "match")[0]["part"] if p["name"] == "concept"][0]["valueCoding"]
    assert coding["code"] == "old"


def test_expand_get_paged(core_svc):
    r = _call(core_svc, "expand", "ValueSet", [("url", GENDER_VS), ("count", "2"), ("offset", "1")])
    assert [c["code"] for c in r.resource["expansion"]["contains"]] == ["female", "other"]


@pytest.mark.parametrize(("op", "rt", "query", "status"), [
    ("expand", "ValueSet", [("url", "http://example.org/none")], 404),
    ("expand", "ValueSet", [("url", GENDER_VS), ("count", "lots")], 400),
    ("expand", "ValueSet", [], 400),
    ("expand", "ValueSet", [("url", "http://hl7.org/fhir/ValueSet/clinical-findings")], 404),
    ("lookup", "CodeSystem", [("system", GENDER), ("code", "martian")], 404),
    ("lookup", "CodeSystem", [("code", "male")], 400),
    ("subsumes", "CodeSystem", [("system", GENDER), ("codeA", "male"), ("codeB", "nope")], 422),
    ("translate", "ConceptMap", [], 400),
    ("validate-code", "ValueSet", [("url", GENDER_VS)], 400),
])
def test_bad_input_is_an_operation_outcome(core_svc, op, rt, query, status):
    with pytest.raises(OperationOutcomeError) as ei:
        _call(core_svc, op, rt, query)
    assert ei.value.status == status
    assert ei.value.outcome()["resourceType"] == "OperationOutcome"


def test_malformed_body(core_svc):
    req = FhirRequest("POST", "ValueSet/$expand", body=b"{not json")
    with pytest.raises(OperationOutcomeError) as ei:
        make_handler(core_svc, "expand")(None, req, "ValueSet", None)
    assert ei.value.status == 400
    req = FhirRequest("POST", "ValueSet/$expand", resource={"resourceType": "Patient"})
    with pytest.raises(OperationOutcomeError):
        make_handler(core_svc, "expand")(None, req, "ValueSet", None)


def test_store_sync_events(animals, animals_cs):
    from fhir_server.events import ResourceChanged

    vs = {"resourceType": "ValueSet", "id": "v1", "url": "http://example.org/vs/synced", "status": "active",
          "compose": {"include": [{"system": "http://example.org/cs/animals", "concept": [{"code": "dog"}]}]}}
    sync_event(animals, ResourceChanged("create", "ValueSet", "v1", 1, vs))
    assert animals.in_value_set("http://example.org/vs/synced", "http://example.org/cs/animals", "dog") is True
    sync_event(animals, ResourceChanged("delete", "ValueSet", "v1", 2, None))
    assert animals.in_value_set("http://example.org/vs/synced", "http://example.org/cs/animals", "dog") is None
