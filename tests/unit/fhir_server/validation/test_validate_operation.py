"""$validate through the real router on SQLite (type and instance level, the three modes)."""

import json

import pytest

from fhir_server.model import FhirRequest


def call(svc, method, path, query=None, resource=None, body=None, headers=None):
    return svc.router.handle(FhirRequest(method, path, query or [], headers or {}, body=body, resource=resource))


PATIENT = {"resourceType": "Patient", "name": [{"family": "Chalmers"}], "gender": "male",
           "birthDate": "1974-12-25"}


def _issues(resp):
    assert resp.status == 200, resp.resource
    assert resp.resource["resourceType"] == "OperationOutcome"
    return resp.resource["issue"]


def test_type_level_valid_raw_resource_is_all_ok(sqlite_services):
    issues = _issues(call(sqlite_services, "POST", "Patient/$validate", resource=dict(PATIENT)))
    assert issues == [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]


def test_type_level_reports_errors_with_200(sqlite_services):
    bad = dict(PATIENT, gender="robot", birthDate="25/12/1974", colour="blue")
    issues = _issues(call(sqlite_services, "POST", "Patient/$validate", resource=bad))
    errors = {i["expression"][0]: i for i in issues if i["severity"] == "error"}
    assert set(errors) == {"Patient.gender", "Patient.birthDate", "Patient.colour"}
    assert "administrative-gender" in errors["Patient.gender"]["diagnostics"]
    # nothing was stored
    assert call(sqlite_services, "GET", "Patient").resource.get("total", 0) == 0


def test_parameters_input_with_mode_and_json_body(sqlite_services):
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": dict(PATIENT)},
        {"name": "mode", "valueCode": "update"},
    ]}
    body = json.dumps(params).encode()
    issues = _issues(call(sqlite_services, "POST", "Patient/$validate", body=body,
                          headers={"Content-Type": "application/fhir+json"}))
    # mode=update needs an id
    assert [i["severity"] for i in issues] == ["error"] and "id" in issues[0]["diagnostics"]


def test_xml_body(sqlite_services):
    xml = (b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/>'
           b'<birthDate value="1974-02-30"/></Patient>')
    issues = _issues(call(sqlite_services, "POST", "Patient/$validate", body=xml,
                          headers={"Content-Type": "application/fhir+xml"}))
    assert issues[0]["severity"] == "error" and issues[0]["expression"] == ["Patient.birthDate"]


def test_instance_level_modes(sqlite_services):
    created = call(sqlite_services, "POST", "Patient", resource=dict(PATIENT))
    assert created.status == 201
    pid = created.resource["id"]
    # GET validates the stored resource
    assert _issues(call(sqlite_services, "GET", f"Patient/{pid}/$validate"))[0]["diagnostics"] == "All OK"
    # update with a body whose id differs from the URL
    issues = _issues(call(sqlite_services, "POST", f"Patient/{pid}/$validate", query=[("mode", "update")],
                          resource=dict(PATIENT, id="other")))
    assert any("does not match the URL id" in i.get("diagnostics", "") for i in issues)
    assert _issues(call(sqlite_services, "POST", f"Patient/{pid}/$validate", query=[("mode", "update")],
                        resource=dict(PATIENT, id=pid)))[0]["diagnostics"] == "All OK"
    # delete: fine for an existing instance, 404 for a missing one
    assert _issues(call(sqlite_services, "POST", f"Patient/{pid}/$validate",
                        query=[("mode", "delete")]))[0]["diagnostics"] == "All OK"
    assert call(sqlite_services, "POST", "Patient/nope/$validate", query=[("mode", "delete")]).status == 404


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"body": b"{not json", "headers": {"Content-Type": "application/fhir+json"}}, 400),
    ({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}}, 400),
    ({"resource": dict(PATIENT), "query": [("mode", "destroy")]}, 400),
    ({"body": b"<!DOCTYPE x [<!ENTITY a 'b'>]><Patient xmlns='http://hl7.org/fhir'/>",
      "headers": {"Content-Type": "application/fhir+xml"}}, 400),
    ({}, 400),
])
def test_bad_requests(sqlite_services, kwargs, status):
    resp = call(sqlite_services, "POST", "Patient/$validate", **kwargs)
    assert resp.status == status
    assert resp.resource["resourceType"] == "OperationOutcome"


def test_write_path_rejects_invalid_resource(sqlite_services):
    resp = call(sqlite_services, "POST", "Patient", resource=dict(PATIENT, gender="robot"))
    assert resp.status in (400, 422)
    assert resp.resource["issue"][0]["expression"] == ["Patient.gender"]
