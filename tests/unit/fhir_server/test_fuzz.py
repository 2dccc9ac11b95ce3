"""Hypothesis throws random bodies, headers and query strings at every interaction: never a 500,
and a rejected request never changes stored data."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.model import FhirRequest

PATHS = ["", "Patient", "Patient/p1", "Patient/p1/_history", "Patient/p1/_history/1", "Patient/_search",
         "Observation", "Patient/p1/Observation", "_history", "metadata", "Patient/$validate", "Patient/p1/$everything",
         "Nope", "Patient/p1/_history/zz", "Patient/../x", "$reindex"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
CONTENT_TYPES = ["application/fhir+json", "application/json", "application/fhir+xml", "application/json-patch+json",
                 "application/x-www-form-urlencoded", "text/plain", "", "multipart/form-data; boundary=x"]
PARAM_NAMES = ["_id", "name", "birthdate", "identifier", "_count", "_sort", "_include", "_revinclude", "_has:Observation:patient:code",
               "subject:Patient.name", "_summary", "_elements", "_total", "code:in", "value-quantity", "_lastUpdated",
               "gender:not", "general-practitioner.name", "_cursor", "_format", "_since", "_at", "x"]

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                                             max_size=4), max_leaves=15)
resources = st.fixed_dictionaries({"resourceType": st.sampled_from(["Patient", "Observation", "Bundle", "Parameters", "X"])},
                                  optional={"id": st.text(max_size=70), "name": json_values, "gender": json_values,
                                            "entry": json_values, "birthDate": json_values, "status": json_values,
                                            "parameter": json_values, "type": st.sampled_from(["transaction", "batch", "x"])})
bodies = st.one_of(st.binary(max_size=200), resources.map(lambda r: json.dumps(r).encode()),
                   st.just(b'<Patient xmlns="http://hl7.org/fhir"><gender value="x"/></Patient>'),
                   st.just(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Patient>&e;</Patient>'))
headers = st.dictionaries(st.sampled_from(["If-Match", "If-None-Match", "If-None-Exist", "If-Modified-Since", "Prefer",
                                           "Accept"]), st.text(max_size=30), max_size=3)
queries = st.lists(st.tuples(st.sampled_from(PARAM_NAMES), st.text(max_size=25)), max_size=4)


@pytest.fixture(scope="module")
def fuzz_services(tmp_path_factory: Any) -> Any:
    from digitalfront.app import build_services
    from digitalfront.config import Settings

    svc = build_services(Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/f.db", auth=False))
    svc.router.handle(FhirRequest("PUT", "Patient/p1", resource={"resourceType": "Patient", "id": "p1",
                                                                 "name": [{"family": "Fuzz"}]}))
    return svc


def snapshot(svc: Any) -> Any:
    return svc.repo.read("Patient", "p1").version, svc.repo.count_by_type()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(method=st.sampled_from(METHODS), path=st.sampled_from(PATHS), body=bodies, ctype=st.sampled_from(CONTENT_TYPES),
       extra=headers, query=queries)
def test_no_500_and_rejections_change_nothing(fuzz_services: Any, method: str, path: str, body: bytes, ctype: str,
                                             extra: dict, query: list) -> None:
    if not fuzz_services.repo.exists("Patient", "p1"):  # an earlier example may have deleted it, legitimately
        fuzz_services.router.handle(FhirRequest("PUT", "Patient/p1", resource={"resourceType": "Patient", "id": "p1"}))
    before = snapshot(fuzz_services)
    hdrs = {"Content-Type": ctype, **extra}
    resp = fuzz_services.router.handle(FhirRequest(method, path, query, hdrs, body=body if method in
                                                   ("POST", "PUT", "PATCH") else None))
    assert resp.status < 500, (method, path, query, hdrs, body, resp.resource)
    if resp.status >= 400:
        assert resp.resource is not None and resp.resource["resourceType"] == "OperationOutcome"
        assert snapshot(fuzz_services) == before
