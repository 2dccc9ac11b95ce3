"""validate_resource on real data (R4 examples, Synthea) and on targeted defects."""

import copy
import gzip
import json
from pathlib import Path

import pytest

from fhir_server.validation import has_errors, validate_resource
from terminology.packages import iter_resources, shared_package

SHARED = Path(__file__).resolve().parents[4].parent / "shared"
CONFORMANCE_TYPES = {
    "StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter", "ConceptMap", "OperationDefinition",
    "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide", "NamingSystem", "StructureMap",
    "GraphDefinition", "MessageDefinition", "TerminologyCapabilities",
}
# Official examples that really are invalid R4 (checked by hand against the spec):
KNOWN_INVALID = {
    "Questionnaire/qs1": "nested items without the mandatory linkId",
    "DiagnosticReport/gingival-mass": "resultsInterpreter.display is an empty string",
}


@pytest.fixture(scope="module")
def package():
    pkg = shared_package("hl7.fhir.r4.examples")
    if pkg is None:
        pytest.skip("hl7.fhir.r4.examples package not available")
    return pkg


@pytest.fixture(scope="module")
def obs(package):
    return next(r for r in iter_resources(package, {"Observation"}) if r["id"] == "example")


def errors(resource, **kw):
    return {(tuple(i.expression), i.code): i.diagnostics
            for i in validate_resource(resource, **kw) if i.severity == "error"}


def paths(resource, **kw):
    return sorted(p[0][0] for p in errors(resource, **kw))


def test_official_examples_are_valid(package):
    invalid = {}
    count = 0
    for res in iter_resources(package):
        if res["resourceType"] in CONFORMANCE_TYPES or res["resourceType"] == "Bundle" and res.get("id") in (
                "resources", "dataelements", "valueset-expansions", "valuesets", "v3-valuesets",
                "v2-valuesets", "profiles-others", "extensions", "profiles-resources", "profiles-types",
                "types", "conceptmaps", "searchParams"):
            continue
        count += 1
        errs = [i.diagnostics for i in validate_resource(res) if i.severity == "error"]
        if errs:
            invalid[f"{res['resourceType']}/{res.get('id')}"] = errs[0]
    assert count > 690
    assert set(invalid) == set(KNOWN_INVALID), invalid


def test_synthea_bundles_are_valid():
    folder = SHARED / "corpora" / "synthea-r4"
    files = sorted(folder.glob("*.json.gz"))
    if not files:
        pytest.skip("synthea corpus not available")
    n = 0
    for f in files[:20]:
        bundle = json.loads(gzip.decompress(f.read_bytes()))
        assert not has_errors(validate_resource(bundle)), f.name
        for entry in bundle["entry"]:
            n += 1
            issues = validate_resource(entry["resource"])
            assert not has_errors(issues), (f.name, [i.to_fhir() for i in issues][:3])
            # the only warnings are the US Core / Synthea extensions we do not ship
            assert all("extension" in i.diagnostics for i in issues)
    assert n > 5000


def test_valid_observation_has_no_issues(obs):
    assert validate_resource(obs) == []


@pytest.mark.parametrize(("mutate", "expected_path", "code"), [
    (lambda r: r.update(colour="red"), "Observation.colour", "structure"),
    (lambda r: r.pop("status"), "Observation.status", "required"),
    (lambda r: r.update(status="done"), "Observation.status", "code-invalid"),
    (lambda r: r.update(status=["final"]), "Observation.status", "structure"),
    (lambda r: r.update(category={"text": "x"}), "Observation.category", "structure"),
    (lambda r: r.update(category=[]), "Observation.category", "structure"),
    (lambda r: r.update(issued="2013-04-03 15:30"), "Observation.issued", "value"),
    (lambda r: r.update(effectiveDateTime="2013-02-30"), "Observation.effectiveDateTime", "value"),
    (lambda r: r.update(effectiveDateTime="2013-04-02T10:30"), "Observation.effectiveDateTime", "value"),
    (lambda r: r.update(valueString="also"), "Observation.valueString", "structure"),
    (lambda r: r["valueQuantity"].update(value="6.3"), "Observation.valueQuantity.value", "value"),
    (lambda r: r["subject"].update(reference="Patient/a b"), "Observation.subject.reference", "invalid"),
    (lambda r: r["subject"].update(reference="Alien/1"), "Observation.subject.reference", "invalid"),
    (lambda r: r.update(id="x" * 65), "Observation.id", "invalid"),
    (lambda r: r.update(id="bad_id"), "Observation.id", "invalid"),
    (lambda r: r["code"]["coding"][0].update(extra=1), "Observation.code.coding[0].extra", "structure"),
    (lambda r: r.update(_status={"extension": [{"url": "http://x"}], "foo": 1}), "Observation.status.foo",
     "structure"),
    (lambda r: r.update(text={"status": "generated", "div": "<div>no namespace</div>"}),
     "Observation.text.div", "value"),
    (lambda r: r.update(text={"status": "generated",
                              "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>'}),
     "Observation.text.div", "value"),
    (lambda r: r.update(text={"status": "generated",
                              "div": '<div xmlns="http://www.w3.org/1999/xhtml">&reg;</div>'}),
     "Observation.text.div", "value"),
    (lambda r: r.update(referenceRange=[{"low": {"value": 1}, "type": {"coding": [{"system": "s", "code": "c"}]}}]),
     None, None),  # local Coding.system is a business rule: a warning outside strict mode
])
def test_defects_are_reported(obs, mutate, expected_path, code):
    res = copy.deepcopy(obs)
    mutate(res)
    errs = errors(res)
    if expected_path is None:
        assert errs == {}
        assert errors(res, strict=True)
        return
    assert expected_path in [p[0][0] for p in errs], errs
    assert any(p[0][0] == expected_path and p[1] == code for p in errs), errs


def test_primitive_extension_and_null_alignment():
    good = {"resourceType": "Patient", "name": [{"given": ["A", None], "_given": [None, {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier", "valueCode": "BR"}]}]}],
            "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                          "valueDateTime": "1974-12-25T14:35:45-05:00"}]}}
    assert errors(good, strict=True) == {}
    bad = copy.deepcopy(good)
    bad["name"][0]["_given"] = [None, None]
    assert paths(bad) == ["Patient.name[0].given[1]"]


def test_reference_target_and_extensions_are_strict_only():
    res = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Medication/1"},
           "extension": [{"url": "http://example.org/unknown", "valueString": "x"},
                         {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                          "valueDateTime": "2020-01-01"}]}
    assert errors(res) == {}
    assert paths(res, strict=True) == ["Observation.extension[0]", "Observation.extension[1]",
                                       "Observation.subject.reference"]


def test_invariants(obs):
    res = copy.deepcopy(obs)
    res["effectivePeriod"] = {"start": "2020-02-01", "end": "2020-01-01"}
    del res["effectiveDateTime"]
    res["contained"] = [{"resourceType": "Patient", "id": "p1"}]
    strict = paths(res, strict=True)
    assert "Observation.effectivePeriod" in strict  # per-1
    assert "Observation.contained[0]" in strict  # dom-3: not referenced
    res["subject"] = {"reference": "#p1"}
    res["effectivePeriod"]["end"] = "2020-03-01T10:00:00Z"
    assert paths(res, strict=True) == []


def test_bundle_rules():
    bundle = {"resourceType": "Bundle", "type": "document", "timestamp": "2020-01-01T00:00:00Z",
              "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"},
              "entry": [
                  {"fullUrl": "Composition/1", "resource": {
                      "resourceType": "Composition", "id": "1", "status": "final", "type": {"text": "t"},
                      "date": "2020", "author": [{"display": "me"}], "title": "t",
                      "subject": {"reference": "Patient/9"}}},
                  {"fullUrl": "http://a.org/fhir/Patient/2", "resource": {"resourceType": "Patient", "id": "2"}},
                  {"fullUrl": "http://a.org/fhir/Patient/2", "resource": {"resourceType": "Patient", "id": "2"}},
              ]}
    msgs = [i.diagnostics for i in validate_resource(bundle, strict=True) if i.severity == "error"]
    assert any("must be an absolute URL" in m for m in msgs)
    assert any("Duplicate fullUrl" in m for m in msgs)
    assert not has_errors(validate_resource(bundle))  # business rules only: warnings on writes


def test_terminology_service_is_consulted():
    class Terminology:
        def __init__(self):
            self.calls = []

        def in_value_set(self, url, system, code):
            self.calls.append((url, system, code))
            return code == "robot"

    tx = Terminology()
    res = {"resourceType": "Patient", "gender": "robot"}
    assert errors(res, terminology=tx) == {}
    # a plain code: the system is the one the required value set draws on
    assert tx.calls == [("http://hl7.org/fhir/ValueSet/administrative-gender",
                         "http://hl7.org/fhir/administrative-gender", "robot")]
    assert paths(res) == ["Patient.gender"]  # the shipped extract disagrees


def test_mode_handling():
    assert validate_resource({"resourceType": "Patient"}, mode="delete") == []
    assert paths({"resourceType": "Patient"}, mode="update") == ["Patient"]
    assert has_errors(validate_resource({"resourceType": "Patient"}, mode="bogus"))
    assert paths({"resourceType": "Nope"}) == ["Nope"]


def test_r4_only_resource_types_accepted():
    res = {"resourceType": "MedicinalProduct", "name": [{"productName": "Aspirin"}],
           "domain": {"system": "http://hl7.org/fhir/medicinal-product-domain", "code": "Human"}}  # a Coding in R4
    assert validate_resource(res) == []
    assert paths(dict(res, name=[{}])) == ["MedicinalProduct.name[0]"]  # an empty object
    missing = dict(res, name=[{"namePart": [{"part": "Asp", "type": {"code": "stem"}}]}])
    assert paths(missing) == ["MedicinalProduct.name[0].productName"]  # min=1 in R4


@pytest.fixture(scope="module")
def terminology_service(tmp_path_factory):
    from terminology.service import TerminologyService

    svc = TerminologyService(f"sqlite:///{tmp_path_factory.mktemp('tx')}/tx.db")
    svc.ensure_core(background=False)
    return svc


def test_with_the_real_terminology_service(terminology_service):
    assert paths({"resourceType": "Patient", "gender": "robot"}, terminology=terminology_service) == \
        ["Patient.gender"]
    cond = {"resourceType": "Condition", "subject": {"reference": "Patient/1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]}}
    assert errors(cond, terminology=terminology_service) == {}
    cond["clinicalStatus"]["coding"][0]["code"] = "dormant"
    assert paths(cond, terminology=terminology_service) == ["Condition.clinicalStatus"]
