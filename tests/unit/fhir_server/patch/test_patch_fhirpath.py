"""FHIRPath Patch behaviour beyond the official cases: errors, choice types, extensions, lists."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.patch import apply_patch

FHIR_JSON = "application/fhir+json"


def op(type_: str, path: str, **parts: Any) -> dict[str, Any]:
    out: list[dict[str, Any]] = [{"name": "type", "valueCode": type_}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "name":
            out.append({"name": "name", "valueString": value})
        elif name in ("index", "source", "destination"):
            out.append({"name": name, "valueInteger": value})
        else:  # value_xxx=... -> {"name": "value", "valueXxx": ...}; value=[parts] -> part list
            if name == "value":
                out.append({"name": "value", "part": value})
            else:
                out.append({"name": "value", name.replace("value_", "value"): value})
    return {"name": "operation", "part": out}


def params(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(ops)}


def patch(resource: dict[str, Any], *ops: dict[str, Any]) -> dict[str, Any]:
    return apply_patch(resource, FHIR_JSON, params(*ops))


def status_of(resource: dict[str, Any], body: Any, content_type: str = FHIR_JSON) -> int:
    with pytest.raises(OperationOutcomeError) as info:
        apply_patch(resource, content_type, body)
    outcome = info.value.outcome()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"]
    return info.value.status


PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "id": "p1",
    "identifier": [{"use": "official", "system": "urn:a", "value": "1"},
                   {"use": "usual", "system": "urn:b", "value": "2"}],
    "name": [{"family": "Chalmers", "given": ["Peter", "James"],
              "_given": [None, {"extension": [{"url": "urn:x", "valueString": "J"}]}]}],
    "deceasedBoolean": False,
    "contained": [{"resourceType": "Organization", "id": "o1", "name": "Acme"}],
}


def test_where_filter_selects_the_element() -> None:
    out = patch(PATIENT, op("replace", "Patient.identifier.where(use = 'usual').value", value_String="3"))
    assert [i["value"] for i in out["identifier"]] == ["1", "3"]
    assert PATIENT["identifier"][1]["value"] == "2", "the input is never modified"


def test_choice_type_replace_renames_the_key() -> None:
    out = patch(PATIENT, op("replace", "Patient.deceased", value_DateTime="2020-01-01"))
    assert "deceasedBoolean" not in out and out["deceasedDateTime"] == "2020-01-01"


def test_choice_type_add_and_conflict() -> None:
    base = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    out = patch(base, op("add", "Observation", name="value", value_Quantity={"value": 5, "unit": "mg"}))
    assert out["valueQuantity"] == {"value": 5, "unit": "mg"}
    # a second value[x] of another type is "already present": 422
    assert status_of(out, params(op("add", "Observation", name="value", value_String="x"))) == 422
    # a type the choice does not allow is 422
    assert status_of(base, params(op("add", "Observation", name="value", value_HumanName={"text": "x"}))) == 422


def test_primitive_list_keeps_extension_companion_aligned() -> None:
    out = patch(PATIENT, op("delete", "Patient.name.given[0]"))
    assert out["name"][0]["given"] == ["James"]
    assert out["name"][0]["_given"] == [{"extension": [{"url": "urn:x", "valueString": "J"}]}]
    out = patch(PATIENT, op("delete", "Patient.name.given[1]"))
    assert out["name"][0]["given"] == ["Peter"] and "_given" not in out["name"][0]
    out = patch(PATIENT, op("insert", "Patient.name.given", index=0, value_String="Jim"))
    assert out["name"][0]["given"] == ["Jim", "Peter", "James"]
    assert out["name"][0]["_given"][2]["extension"][0]["valueString"] == "J"


def test_primitive_value_with_extension_in_parameters() -> None:
    value = {"name": "value", "valueDate": "1970-01-01",
             "_valueDate": {"extension": [{"url": "urn:e", "valueCode": "approx"}]}}
    body = params({"name": "operation", "part": [{"name": "type", "valueCode": "add"},
                                                  {"name": "path", "valueString": "Patient"},
                                                  {"name": "name", "valueString": "birthDate"}, value]})
    out = apply_patch(PATIENT, FHIR_JSON, body)
    assert out["birthDate"] == "1970-01-01" and out["_birthDate"]["extension"][0]["valueCode"] == "approx"


def test_extension_function_and_contained_resource() -> None:
    out = patch(PATIENT, op("replace", "Patient.name.given.extension('urn:x').value", value_String="K"))
    assert out["name"][0]["_given"][1]["extension"][0]["valueString"] == "K"
    out = patch(PATIENT, op("replace", "Patient.name.given.extension.value", value_String="L"))
    assert out["name"][0]["_given"][1]["extension"][0]["valueString"] == "L"
    out = patch(PATIENT, op("replace", "Patient.contained.ofType(Organization).name", value_String="Beta"))
    assert out["contained"][0]["name"] == "Beta"
    out = patch(PATIENT, op("add", "Patient.contained[0]", name="alias", value_String="AC"))
    assert out["contained"][0]["alias"] == ["AC"], "Organization.alias repeats, so add appends to a list"


def test_anonymous_parts_build_lists_from_the_model() -> None:
    out = patch(PATIENT, op("add", "Patient", name="contact", value=[
        {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "1"}},
        {"name": "telecom", "valueContactPoint": {"system": "email", "value": "a@b"}},
        {"name": "gender", "valueCode": "female"}]))
    assert out["contact"] == [{"telecom": [{"system": "phone", "value": "1"},
                                           {"system": "email", "value": "a@b"}], "gender": "female"}]


def test_insert_into_missing_list_and_move() -> None:
    out = patch(PATIENT, op("insert", "Patient.telecom", index=0, value_ContactPoint={"system": "fax"}))
    assert out["telecom"] == [{"system": "fax"}]
    out = patch(PATIENT, op("move", "Patient.identifier", source=1, destination=0))
    assert [i["value"] for i in out["identifier"]] == ["2", "1"]


def test_delete_missing_is_a_no_op_and_delete_prunes_empty_parents() -> None:
    assert patch(PATIENT, op("delete", "Patient.birthDate")) == PATIENT
    out = patch(PATIENT, op("delete", "Patient.contained[0].name"))
    assert out["contained"] == [{"resourceType": "Organization", "id": "o1"}]


@pytest.mark.parametrize(("operation", "why"), [
    (op("replace", "Patient.identifier.value", value_String="x"), "replace matching two elements"),
    (op("delete", "Patient.identifier"), "delete matching two elements"),
    (op("replace", "Patient.birthDate", value_Date="2000-01-01"), "replace matching nothing"),
    (op("add", "Patient.birthDate", name="x", value_String="x"), "add below nothing"),
    (op("add", "Patient", name="nosuch", value_String="x"), "unknown element"),
    (op("add", "Patient", name="gender", value_HumanName={"text": "x"}), "complex value for a code"),
    (op("add", "Patient", name="deceased", value_Boolean=True), "non-repeating element present"),
    (op("insert", "Patient.identifier", index=5, value_Identifier={"value": "9"}), "index past the end"),
    (op("insert", "Patient.identifier.where(use='usual')", index=0, value_Identifier={}), "part of a list"),
    (op("move", "Patient.identifier", source=0, destination=2), "destination past the end"),
    (op("move", "Patient.gender", source=0, destination=0), "move on nothing"),
    (op("move", "Patient", source=0, destination=0), "move on the resource itself"),
    (op("move", "Patient.name[0].family", source=0, destination=0), "move on a non-repeating element"),
    (op("replace", "Patient.id", value_Id="other"), "changing the id"),
    (op("delete", "Patient.id"), "removing the id"),
    (op("replace", "Patient", value_String="x"), "replacing the resource"),
    (op("add", "Patient", name="contact", value=[{"name": "nosuch", "valueString": "x"}]), "bad part"),
])
def test_patches_that_cannot_apply_are_422(operation: dict[str, Any], why: str) -> None:
    before = copy.deepcopy(PATIENT)
    assert status_of(PATIENT, params(operation)) == 422, why
    assert PATIENT == before


@pytest.mark.parametrize(("body", "why"), [
    ({"resourceType": "Patient"}, "not a Parameters"),
    (params({"name": "op", "part": []}), "parameter not named operation"),
    (params({"name": "operation", "part": [{"name": "type", "valueCode": "frobnicate"},
                                           {"name": "path", "valueString": "Patient"}]}), "unknown type"),
    (params({"name": "operation", "part": [{"name": "type", "valueCode": "add"},
                                           {"name": "path", "valueString": "Patient"}]}), "add without name"),
    (params(op("replace", "Patient.name.(", value_String="x")), "unparsable FHIRPath"),
    (params(op("replace", "'abc'", value_String="x")), "a literal, not an element"),
    (params(op("replace", "Patient.identifier.count()", value_Integer=1)), "a computed value"),
    (params(op("insert", "Patient.identifier", index=0)), "insert without a value"),
    (params({"name": "operation", "part": [{"name": "type", "valueCode": "insert"},
                                           {"name": "path", "valueString": "Patient.identifier"},
                                           {"name": "index", "valueString": "0"},
                                           {"name": "value", "valueIdentifier": {}}]}), "non-integer index"),
    (params(op("add", "Patient", name="active", value_Boolean="yes")), "valueBoolean not a boolean"),
    (params(op("add", "Patient", name="active", value_Nonsense="x")), "unknown value type"),
    ([{"op": "add"}], "a JSON Patch array sent as FHIRPath Patch"),
    (b"{not json", "malformed JSON bytes"),
])
def test_malformed_patches_are_400(body: Any, why: str) -> None:
    assert status_of(PATIENT, body) == 400, why


def test_bytes_body_and_unknown_media_type() -> None:
    import json

    body = json.dumps(params(op("replace", "Patient.active", value_Boolean=True))).encode()
    assert status_of(PATIENT, body) == 422  # Patient.active is absent: nothing to replace
    out = apply_patch({**PATIENT, "active": False}, "application/fhir+json; charset=utf-8", body)
    assert out["active"] is True
    assert status_of(PATIENT, body, "text/plain") == 415
    assert status_of(PATIENT, b"<xml-patch/>", "application/xml-patch+xml") == 415


def test_operations_apply_in_order() -> None:
    out = patch(PATIENT,
                op("add", "Patient", name="birthDate", value_Date="1974-12-25"),
                op("replace", "Patient.birthDate", value_Date="1975-01-01"),
                op("add", "Patient", name="telecom", value_ContactPoint={"system": "phone"}),
                op("insert", "Patient.telecom", index=0, value_ContactPoint={"system": "email"}))
    assert out["birthDate"] == "1975-01-01"
    assert [t["system"] for t in out["telecom"]] == ["email", "phone"]


def test_failure_midway_leaves_input_untouched() -> None:
    before = copy.deepcopy(PATIENT)
    with pytest.raises(OperationOutcomeError):
        patch(PATIENT, op("delete", "Patient.name"), op("replace", "Patient.birthDate", value_Date="2000"))
    assert PATIENT == before
