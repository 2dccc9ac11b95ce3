"""SMART scope enforcement hooks, on official R4 example resources."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from fhir_server import authz
from fhir_server.errors import OperationOutcomeError
from fhir_server.model import RequestContext

PKG = Path(__file__).resolve().parents[3] / ".." / "shared" / "fhir-packages" / "hl7.fhir.r4.examples-4.0.1.tgz"
pytestmark = pytest.mark.skipif(not PKG.exists(), reason=f"FHIR examples package not found at {PKG}")
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


@pytest.fixture(scope="module")
def examples() -> dict[str, dict]:
    names = ["Observation-example", "Observation-f001", "Patient-example", "Patient-f001", "Medication-med0301",
             "Condition-example", "Encounter-example", "AllergyIntolerance-example", "Practitioner-f005"]
    out = {}
    with tarfile.open(PKG) as tar:
        for n in names:
            out[n] = json.load(tar.extractfile(f"package/{n}.json"))  # type: ignore[arg-type]
    return out


def ctx(*scopes: str, patient: str | None = None, fhir_user: str | None = None) -> RequestContext:
    return RequestContext(scopes=frozenset(scopes), patient=patient, fhir_user=fhir_user)


def denied(fn, *args) -> bool:
    try:
        fn(*args)
    except OperationOutcomeError as e:
        assert e.status == 403
        return True
    return False


def test_embedded_compartment_table_matches_official_definition():
    from smart_apps.tools.gen_compartment import build, table_params

    paths, params = build(str(PKG)), table_params(str(PKG))
    assert {k: (tuple(params[k]), tuple(v)) for k, v in paths.items()} == authz.PATIENT_COMPARTMENT
    assert authz.PATIENT_COMPARTMENT["Observation"][1] == ("subject", "performer")


@pytest.mark.parametrize("scope,level,rtype,perms", [
    ("patient/*.read", "patient", "*", "rs"),
    ("user/Observation.write", "user", "Observation", "cud"),
    ("system/*.*", "system", "*", "cruds"),
    ("patient/Observation.rs", "patient", "Observation", "rs"),
    ("user/*.cruds", "user", "*", "cruds"),
    ("system/Patient.r", "system", "Patient", "r"),
])
def test_parse_v1_and_v2(scope, level, rtype, perms):
    rule = authz.parse_scope(scope)
    assert rule is not None
    assert (rule.level, rule.resource_type, rule.permissions) == (level, rtype, frozenset(perms))


@pytest.mark.parametrize("scope", ["openid", "launch/patient", "patient/Observation.sr", "patient/observation.rs",
                                   "patient/Observation.x", "patient/Observation.rs?category", "admin/*.read"])
def test_parse_rejects_non_resource_and_malformed(scope):
    assert authz.parse_scope(scope) is None


def test_granular_scope_params():
    rule = authz.parse_scope(f"patient/Observation.rs?category={LAB}")
    assert rule is not None and rule.params == (("category", LAB),)


def test_unrestricted_context_allows_everything(examples):
    authz.check_interaction(RequestContext(), "delete", "Patient")
    authz.check_resource(RequestContext(), "read", examples["Observation-f001"])
    assert authz.search_restrictions(RequestContext(), "Observation") == []


def test_type_not_granted_is_forbidden():
    c = ctx("patient/Observation.rs", patient="example")
    authz.check_interaction(c, "read", "Observation")
    assert denied(authz.check_interaction, c, "read", "Condition")
    assert denied(authz.check_interaction, c, "create", "Observation")
    assert denied(authz.check_interaction, c, "search-system", None)


def test_v2_read_without_search():
    c = ctx("user/Patient.r")
    authz.check_interaction(c, "read", "Patient")
    assert denied(authz.check_interaction, c, "search-type", "Patient")


def test_patient_scope_confines_reads_to_compartment(examples):
    c = ctx("patient/*.read", patient="example")
    authz.check_resource(c, "read", examples["Observation-example"])
    authz.check_resource(c, "read", examples["Patient-example"])
    assert denied(authz.check_resource, c, "read", examples["Observation-f001"])
    assert denied(authz.check_resource, c, "read", examples["Patient-f001"])
    # Medication and Practitioner are outside the patient compartment: not confined.
    authz.check_resource(c, "read", examples["Medication-med0301"])
    authz.check_resource(c, "read", examples["Practitioner-f005"])


def test_patient_scope_confines_writes(examples):
    c = ctx("patient/Observation.cu", patient="example")
    authz.check_resource(c, "create", examples["Observation-example"])
    assert denied(authz.check_resource, c, "create", examples["Observation-f001"])
    assert denied(authz.check_resource, c, "delete", examples["Observation-example"])


def test_patient_scope_without_patient_context_is_forbidden(examples):
    c = ctx("patient/*.read")
    assert denied(authz.check_interaction, c, "read", "Observation")
    assert denied(authz.check_resource, c, "read", examples["Observation-example"])


def test_patient_user_with_user_scopes_is_confined(examples):
    c = ctx("user/*.read", fhir_user="Patient/example")
    authz.check_resource(c, "read", examples["Observation-example"])
    assert denied(authz.check_resource, c, "read", examples["Observation-f001"])
    practitioner = ctx("user/*.read", fhir_user="Practitioner/f005")
    authz.check_resource(practitioner, "read", examples["Observation-f001"])


def test_granular_category_scope(examples):
    c = ctx(f"patient/Observation.rs?category={VITALS}", patient="example")
    authz.check_resource(c, "read", examples["Observation-example"])
    lab = dict(examples["Observation-example"], category=[{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}])
    assert denied(authz.check_resource, c, "read", lab)
    assert authz.search_restrictions(c, "Observation") == [("subject", "Patient/example"), ("category", VITALS)]
    both = ctx(f"patient/Observation.rs?category={VITALS}", f"patient/Observation.rs?category={LAB}",
               patient="example")
    authz.check_resource(both, "read", lab)
    assert ("category", f"{LAB},{VITALS}") in authz.search_restrictions(both, "Observation")


def test_search_restrictions_patient_compartment():
    c = ctx("patient/*.rs", patient="example")
    assert authz.search_restrictions(c, "Patient") == [("_id", "example")]
    assert authz.search_restrictions(c, "Condition") == [("patient", "Patient/example")]
    assert authz.search_restrictions(c, "Observation") == [("subject", "Patient/example")]
    assert authz.search_restrictions(c, "Medication") == []
    # A broader user grant lifts the confinement.
    assert authz.search_restrictions(ctx("patient/*.rs", "user/Condition.rs", patient="example"),
                                     "Condition") == []


def test_scope_within_for_refresh_narrowing():
    granted = ["patient/*.read", "launch/patient", "openid"]
    assert authz.scope_within("patient/Observation.rs", granted)
    assert authz.scope_within("patient/Observation.r", granted)
    assert authz.scope_within("openid", granted)
    assert not authz.scope_within("patient/Observation.c", granted)
    assert not authz.scope_within("user/Observation.rs", granted)
    assert not authz.scope_within("offline_access", granted)
    assert authz.scope_within(f"patient/Observation.rs?category={LAB}", ["patient/Observation.rs"])
    assert not authz.scope_within("patient/Observation.rs", [f"patient/Observation.rs?category={LAB}"])


def test_compartment_patients(examples):
    assert authz.compartment_patients(examples["Observation-example"]) == {"example"}
    assert authz.compartment_patients(examples["Patient-f001"]) == {"f001"}
    assert authz.compartment_patients(examples["Medication-med0301"]) == set()
    allergy = examples["AllergyIntolerance-example"]
    assert authz.compartment_patients(allergy) == {allergy["patient"]["reference"].split("/")[1]}


def test_check_search_targets():
    c = ctx("patient/Patient.rs", patient="example")
    authz.check_search_targets(c, ["Patient"])
    assert denied(authz.check_search_targets, c, ["Patient", "Observation"])
    authz.check_search_targets(RequestContext(), ["Observation"])
