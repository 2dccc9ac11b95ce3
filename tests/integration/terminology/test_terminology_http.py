"""The terminology operations and the terminology-backed token search modifiers over real HTTP:
the full app (create_app with every plugin) behind a real WSGI server (``live_server``), the core R4
terminology loaded in the background at start, plain ``requests`` as the client."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CLINICAL_VS = "http://hl7.org/fhir/ValueSet/condition-clinical"
GENDER = "http://hl7.org/fhir/administrative-gender"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}

CS_URL = "http://example.org/fhir/CodeSystem/respiratory-findings"
VS_URL = "http://example.org/fhir/ValueSet/lower-airway"
CODE_SYSTEM = {
    "resourceType": "CodeSystem", "url": CS_URL, "version": "1", "status": "active", "content": "complete",
    "hierarchyMeaning": "is-a",
    "concept": [
        {"code": "resp", "display": "Respiratory finding", "concept": [
            {"code": "lower", "display": "Lower airway finding", "concept": [
                {"code": "wheeze", "display": "Wheezing"},
                {"code": "crackles", "display": "Crackles"}]},
            {"code": "upper", "display": "Upper airway finding", "concept": [
                {"code": "stridor", "display": "Stridor"}]}]},
        {"code": "other", "display": "Other finding"}],
}
VALUE_SET = {
    "resourceType": "ValueSet", "url": VS_URL, "status": "active",
    "compose": {"include": [{"system": CS_URL, "filter": [{"property": "concept", "op": "is-a", "value": "lower"}]}]},
}


@pytest.fixture
def tx(live_server: Any) -> Any:
    """The live server once its core terminology has finished loading (in the background thread)."""
    svc = live_server.services.terminology
    deadline = time.monotonic() + 30
    while not svc.core_ready():
        if time.monotonic() > deadline:
            pytest.fail("core R4 terminology not loaded within 30 s (is DIGITALFRONT_TERMINOLOGY_AUTOLOAD=0 set?)")
        time.sleep(0.2)
    return live_server


def _get(live: Any, path: str, expect: int = 200, **params: str) -> dict[str, Any]:
    r = requests.get(f"{live.base}/{path}", params=params, headers={"Accept": "application/fhir+json"}, timeout=30)
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    if expect >= 400:
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"
    return body


def _post(live: Any, path: str, resource: dict[str, Any], expect: int = 201) -> dict[str, Any]:
    r = requests.post(f"{live.base}/{path}", json=resource, headers=FHIR_JSON, timeout=30)
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    return body


def _param(params: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in params.get("parameter", []) if p["name"] == name]


def _codes(valueset: dict[str, Any]) -> list[str]:
    return [c["code"] for c in valueset["expansion"].get("contains", [])]


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def test_lookup_and_subsumes_on_core_code_systems(tx):
    out = _get(tx, "CodeSystem/$lookup", system=ACT, code="AMB", property="parent")
    assert _param(out, "display")[0]["valueString"] == "ambulatory"
    assert _param(out, "name")[0]["valueString"] == "v3.ActCode"
    parents = [{p["name"]: p for p in prop["part"]} for prop in _param(out, "property")]
    assert any(p["code"]["valueCode"] == "parent" and p["value"]["valueCode"] == "_ActEncounterCode"
               for p in parents)
    _get(tx, "CodeSystem/$lookup", 404, system=ACT, code="NO-SUCH-CODE")
    _get(tx, "CodeSystem/$lookup", 400, system=ACT)  # code missing

    def outcome(a: str, b: str) -> str:
        return str(_param(_get(tx, "CodeSystem/$subsumes", system=CLINICAL, codeA=a, codeB=b),
                          "outcome")[0]["valueCode"])

    assert outcome("inactive", "resolved") == "subsumes"
    assert outcome("resolved", "inactive") == "subsumed-by"
    assert outcome("active", "active") == "equivalent"
    assert outcome("active", "resolved") == "not-subsumed"
    _get(tx, "CodeSystem/$subsumes", 422, system=CLINICAL, codeA="active", codeB="bogus")


def test_expand_and_validate_code(tx):
    vs = _get(tx, "ValueSet/$expand", url=CLINICAL_VS)
    assert sorted(_codes(vs)) == ["active", "inactive", "recurrence", "relapse", "remission", "resolved"]
    page = _get(tx, "ValueSet/$expand", url=GENDER_VS, count="2", offset="1")
    assert _codes(page) == ["female", "other"]
    langs = _get(tx, "ValueSet/$expand", url="http://hl7.org/fhir/ValueSet/languages", filter="engl")
    assert "en" in _codes(langs) and "de" not in _codes(langs)
    _get(tx, "ValueSet/$expand", 404, url="http://example.org/fhir/ValueSet/nope")

    ok = _get(tx, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER, code="female")
    assert _param(ok, "result")[0]["valueBoolean"] is True
    bad = _get(tx, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER, code="femme")
    assert _param(bad, "result")[0]["valueBoolean"] is False and _param(bad, "message")
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": GENDER_VS},
        {"name": "codeableConcept", "valueCodeableConcept": {"coding": [{"system": GENDER, "code": "male"}]}}]}
    posted = _post(tx, "ValueSet/$validate-code", body, expect=200)
    assert _param(posted, "result")[0]["valueBoolean"] is True
    cs_level = _get(tx, "CodeSystem/$validate-code", url=ACT, code="AMB")
    assert _param(cs_level, "result")[0]["valueBoolean"] is True


def test_translate_forward_and_reverse(tx):
    out = _get(tx, "ConceptMap/$translate", url="http://hl7.org/fhir/ConceptMap/cm-address-use-v2",
               system="http://hl7.org/fhir/address-use", code="home")
    assert _param(out, "result")[0]["valueBoolean"] is True
    concepts = [p["valueCoding"] for m in _param(out, "match") for p in m["part"] if p["name"] == "concept"]
    assert {"system": "http://terminology.hl7.org/CodeSystem/v2-0190", "code": "H"} in concepts
    rev = _get(tx, "ConceptMap/$translate", system="http://terminology.hl7.org/CodeSystem/v2-0190", code="BA",
               reverse="true")
    assert [p["valueCoding"]["code"] for m in _param(rev, "match") for p in m["part"]
            if p["name"] == "concept"] == ["old"]
    _get(tx, "ConceptMap/$translate", 400)


def test_resources_written_over_rest_drive_operations_and_instance_level_calls(tx):
    cs = _post(tx, "CodeSystem", CODE_SYSTEM)
    vs = _post(tx, "ValueSet", VALUE_SET)
    out = _get(tx, f"CodeSystem/{cs['id']}/$lookup", code="wheeze")
    assert _param(out, "display")[0]["valueString"] == "Wheezing"
    sub = _get(tx, "CodeSystem/$subsumes", system=CS_URL, codeA="resp", codeB="stridor")
    assert _param(sub, "outcome")[0]["valueCode"] == "subsumes"
    assert sorted(_codes(_get(tx, f"ValueSet/{vs['id']}/$expand"))) == ["crackles", "lower", "wheeze"]
    assert sorted(_codes(_get(tx, "ValueSet/$expand", url=VS_URL))) == ["crackles", "lower", "wheeze"]
    no = _get(tx, "ValueSet/$validate-code", url=VS_URL, system=CS_URL, code="stridor")
    assert _param(no, "result")[0]["valueBoolean"] is False
    _get(tx, "CodeSystem/no-such-id/$lookup", 404, code="wheeze")


def _observation(code: str, system: str = CS_URL) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": system, "code": code}]}}


def test_token_in_and_below_search_through_the_terminology_service(tx):
    _post(tx, "CodeSystem", CODE_SYSTEM)
    _post(tx, "ValueSet", VALUE_SET)
    ids = {code: _post(tx, "Observation", _observation(code))["id"]
           for code in ("resp", "lower", "wheeze", "crackles", "upper", "stridor", "other")}
    elsewhere = _post(tx, "Observation", _observation("wheeze", "http://example.org/other-system"))["id"]

    found = _get(tx, "Observation", **{"code:in": VS_URL})
    assert _ids(found) == {ids["lower"], ids["wheeze"], ids["crackles"]}
    below = _get(tx, "Observation", **{"code:below": f"{CS_URL}|upper"})
    assert _ids(below) == {ids["upper"], ids["stridor"]}
    below_root = _get(tx, "Observation", **{"code:below": f"{CS_URL}|resp"})
    assert _ids(below_root) == set(ids.values()) - {ids["other"]}
    assert elsewhere not in _ids(below_root)  # same code, different system
    above = _get(tx, "Observation", **{"code:above": f"{CS_URL}|wheeze"})
    assert _ids(above) == {ids["resp"], ids["lower"], ids["wheeze"]}
    not_in = _get(tx, "Observation", **{"code:not-in": VS_URL})
    assert _ids(not_in) == {ids["resp"], ids["upper"], ids["stridor"], ids["other"], elsewhere}
    combined = _get(tx, "Observation", **{"code:in": VS_URL, "code:below": f"{CS_URL}|wheeze"})
    assert _ids(combined) == {ids["wheeze"]}  # AND of two criteria

    for cs in ("active", "recurrence", "inactive", "remission", "resolved"):
        _post(tx, "Condition", {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
                                "clinicalStatus": {"coding": [{"system": CLINICAL, "code": cs}]},
                                "code": {"text": f"condition {cs}"}})
    inactive = _get(tx, "Condition", **{"clinical-status:below": f"{CLINICAL}|inactive"})
    assert sorted(e["resource"]["clinicalStatus"]["coding"][0]["code"] for e in inactive["entry"]) == \
        ["inactive", "remission", "resolved"]
    assert _get(tx, "Condition", **{"clinical-status:in": CLINICAL_VS})["total"] == 5


def test_below_on_a_code_system_not_loaded_warns_in_the_searchset(tx):
    """SNOMED CT is imported, not shipped: without it ``:below`` can only match the code itself, and the
    searchset says so in an OperationOutcome entry (search.mode = outcome) instead of a silent short result."""
    sct = "http://snomed.info/sct"
    finding = _post(tx, "Observation", _observation("404684003", sct))["id"]
    _post(tx, "Observation", _observation("15777000", sct))  # a descendant, which cannot be known here
    found = _get(tx, "Observation", **{"code:below": f"{sct}|404684003"})
    matches = [e for e in found["entry"] if e["search"]["mode"] == "match"]
    (outcome,) = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "outcome"]
    assert [e["resource"]["id"] for e in matches] == [finding]
    (issue,) = outcome["issue"]
    assert issue["severity"] == "warning" and "404684003" in issue["diagnostics"] \
        and "only that code itself matched" in issue["diagnostics"]
    _post(tx, "CodeSystem", CODE_SYSTEM)
    known = _get(tx, "Observation", **{"code:below": f"{CS_URL}|upper"})
    assert all(e["search"]["mode"] == "match" for e in known.get("entry", []))  # a loaded hierarchy: no warning


def test_search_modifier_errors_are_operation_outcomes(tx):
    _get(tx, "Observation", 400, **{"code:in": "http://example.org/fhir/ValueSet/unknown"})
    _get(tx, "Observation", 400, **{"code:below": "no-system-bar"})
    _get(tx, "Observation", 400, **{"code:above": f"{CS_URL}"})  # system|code needed
    _get(tx, "Observation", 400, **{"subject:in": VS_URL})  # :in is for token parameters only


def test_operation_parameters_by_their_http_names(tx):
    """activeOnly, displayLanguage and includeDesignations as a client sends them on $expand, and the
    ``coding`` parameter of $validate-code, reach the service (they were only tested as its arguments)."""
    url = "http://example.org/fhir/CodeSystem/signs"
    _post(tx, "CodeSystem", {
        "resourceType": "CodeSystem", "url": url, "version": "1", "status": "active", "content": "complete",
        "concept": [
            {"code": "fever", "display": "Fever",
             "designation": [{"language": "de", "value": "Fieber"}]},
            {"code": "chill", "display": "Chills",
             "designation": [{"language": "de", "value": "Schüttelfrost"}]},
            {"code": "ague", "display": "Ague (old term)",
             "property": [{"code": "status", "valueCode": "deprecated"}]}]})
    vs_url, listed_url = "http://example.org/fhir/ValueSet/signs", "http://example.org/fhir/ValueSet/signs-listed"
    _post(tx, "ValueSet", {"resourceType": "ValueSet", "url": vs_url, "status": "active",
                           "compose": {"include": [{"system": url}]}})
    _post(tx, "ValueSet", {"resourceType": "ValueSet", "url": listed_url, "status": "active",
                           "compose": {"include": [{"system": url, "concept": [{"code": "ague"}, {"code": "fever"}]}]}})
    # a whole-system include leaves the deprecated code out unless activeOnly=false asks for it ...
    assert sorted(_codes(_get(tx, "ValueSet/$expand", url=vs_url))) == ["chill", "fever"]
    assert sorted(_codes(_get(tx, "ValueSet/$expand", url=vs_url, activeOnly="false"))) == ["ague", "chill", "fever"]
    # ... one the value set names keeps it unless activeOnly=true
    assert sorted(_codes(_get(tx, "ValueSet/$expand", url=listed_url))) == ["ague", "fever"]
    assert _codes(_get(tx, "ValueSet/$expand", url=listed_url, activeOnly="true")) == ["fever"]
    german = _get(tx, "ValueSet/$expand", url=vs_url, displayLanguage="de", activeOnly="true")
    assert {c["code"]: c["display"] for c in german["expansion"]["contains"]} == {
        "fever": "Fieber", "chill": "Schüttelfrost"}
    plain = _get(tx, "ValueSet/$expand", url=vs_url, includeDesignations="true", activeOnly="true")
    fever = next(c for c in plain["expansion"]["contains"] if c["code"] == "fever")
    assert fever["display"] == "Fever" and {"language": "de", "value": "Fieber"} in fever["designation"]
    for code, valid in (("fever", True), ("shiver", False)):
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "url", "valueUri": vs_url},
            {"name": "coding", "valueCoding": {"system": url, "code": code}}]}
        out = _post(tx, "ValueSet/$validate-code", body, expect=200)
        assert _param(out, "result")[0]["valueBoolean"] is valid, out


def test_expand_takes_the_code_system_version_the_value_set_names(tx):
    """compose.include.version picks one edition of a code system stored in two; without it, the latest."""
    url = "http://example.org/fhir/CodeSystem/editions"
    for version, codes in (("2023", ["a", "b"]), ("2024", ["a", "b", "c"])):
        _post(tx, "CodeSystem", {"resourceType": "CodeSystem", "url": url, "version": version, "status": "active",
                                 "content": "complete", "concept": [{"code": c, "display": c.upper()} for c in codes]})
    for vs_url, include in (("http://example.org/fhir/ValueSet/editions-2023", {"system": url, "version": "2023"}),
                            ("http://example.org/fhir/ValueSet/editions-latest", {"system": url})):
        _post(tx, "ValueSet", {"resourceType": "ValueSet", "url": vs_url, "status": "active",
                               "compose": {"include": [include]}})
    old = _get(tx, "ValueSet/$expand", url="http://example.org/fhir/ValueSet/editions-2023")
    assert sorted(_codes(old)) == ["a", "b"]
    assert {c.get("version") for c in old["expansion"]["contains"]} == {"2023"}
    assert sorted(_codes(_get(tx, "ValueSet/$expand", url="http://example.org/fhir/ValueSet/editions-latest"))) == [
        "a", "b", "c"]
