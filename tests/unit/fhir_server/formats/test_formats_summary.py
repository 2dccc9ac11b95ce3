"""_summary and _elements on the official R4 examples."""

import copy
import json

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.formats.summary import apply_elements, apply_summary
from terminology.packages import iter_resources


@pytest.fixture(scope="module")
def patient(r4_examples_package):
    for res in iter_resources(r4_examples_package, {"Patient"}):
        if res.get("id") == "example":
            return res
    pytest.fail("Patient/example missing from the package")


@pytest.fixture(scope="module")
def observation(r4_examples_package):
    for res in iter_resources(r4_examples_package, {"Observation"}):
        if res.get("id") == "example":
            return res
    pytest.fail("Observation/example missing")


def _subsetted(res):
    return any(t.get("code") == "SUBSETTED" for t in res.get("meta", {}).get("tag", []))


def test_summary_true_keeps_only_summary_elements(patient):
    patient = dict(patient, extension=[{"url": "http://example.org/x", "valueString": "y"}])
    original = copy.deepcopy(patient)
    out = apply_summary(patient, "true")
    assert patient == original  # the stored resource is not mutated
    assert _subsetted(out)
    assert out["id"] == "example" and out["resourceType"] == "Patient"
    # isSummary=true in the R4 Patient definition
    for key in ("identifier", "active", "name", "gender", "birthDate", "managingOrganization"):
        assert out[key] == patient[key], key
    # isSummary=false
    for key in ("text", "contact", "extension"):
        assert key in patient and key not in out, key
    # nested datatype flags apply too: Identifier.type etc. are summary, kept
    assert out["identifier"][0]["system"] == patient["identifier"][0]["system"]


def test_summary_true_on_backbone(observation):
    obs = copy.deepcopy(observation)
    obs["component"] = [{"code": {"text": "c"}, "valueString": "v", "interpretation": [{"text": "i"}]}]
    out = apply_summary(obs, "true")
    assert out["code"] == obs["code"] and out["valueQuantity"] == obs["valueQuantity"]
    # Observation.component.interpretation is not summary, code and value[x] are
    assert out["component"] == [{"code": {"text": "c"}, "valueString": "v"}]


def test_summary_text_and_data(patient):
    text = apply_summary(patient, "text")
    assert set(text) == {"resourceType", "id", "meta", "text"}  # Patient has no mandatory elements
    assert text["text"] == patient["text"] and _subsetted(text)
    data = apply_summary(patient, "data")
    assert "text" not in data and data["contact"] == patient["contact"] and _subsetted(data)
    assert apply_summary(patient, "false") is patient


def test_summary_text_keeps_mandatory(observation):
    out = apply_summary(observation, "text")
    assert out["status"] == observation["status"] and out["code"] == observation["code"]
    assert "valueQuantity" not in out


def test_summary_invalid_mode_is_400(patient):
    with pytest.raises(OperationOutcomeError) as exc:
        apply_summary(patient, "maybe")
    assert exc.value.status == 400


def test_elements(observation):
    out = apply_elements(observation, ["subject,value"])
    # requested + mandatory (status, code) + id/meta
    assert set(out) == {"resourceType", "id", "meta", "status", "code", "subject", "valueQuantity"}
    assert _subsetted(out)
    assert out["valueQuantity"] == observation["valueQuantity"]
    again = apply_elements(observation, ["Observation.subject", "Observation.value[x]"])
    assert again == out


def test_elements_keeps_modifiers(patient):
    res = dict(patient, modifierExtension=[{"url": "http://x", "valueBoolean": True}])
    out = apply_elements(res, ["name"])
    # Patient.active and Patient.deceased[x] are modifiers (isModifier=true), so they stay
    assert out["active"] is True and "deceasedBoolean" in out and "modifierExtension" in out
    assert "gender" not in out and "telecom" not in out
    # the SUBSETTED tag is not duplicated when applied twice
    twice = apply_elements(out, ["name"])
    assert json.dumps(twice["meta"]).count("SUBSETTED") == 1
