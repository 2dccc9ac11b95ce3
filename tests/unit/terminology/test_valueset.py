from __future__ import annotations

import pytest

from terminology.errors import TerminologyError, UnknownCodeSystem, UnknownValueSet

ANIMALS = "http://example.org/cs/animals"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"


def _codes(vs: dict) -> list[str]:
    return [c["code"] for c in vs["expansion"]["contains"]]


def _vs(*includes: dict, exclude: list[dict] | None = None, url: str = "http://example.org/vs/t") -> dict:
    compose: dict = {"include": list(includes)}
    if exclude:
        compose["exclude"] = exclude
    return {"resourceType": "ValueSet", "url": url, "status": "active", "compose": compose}


def test_expand_whole_system_in_definition_order(core_svc):
    out = core_svc.expand(GENDER_VS)
    assert _codes(out) == ["male", "female", "other", "unknown"]
    assert out["expansion"]["total"] == 4
    assert out["url"] == GENDER_VS and "compose" not in out


def test_expand_paging_and_text_filter(core_svc):
    vs = "http://hl7.org/fhir/ValueSet/languages"
    full = core_svc.expand(vs)
    page = core_svc.expand(vs, count=5, offset=3)
    assert _codes(page) == _codes(full)[3:8]
    assert page["expansion"]["total"] == full["expansion"]["total"]
    assert page["expansion"]["offset"] == 3
    en = core_svc.expand(vs, filter="engl")
    assert en["expansion"]["contains"] and all("English" in c["display"] for c in en["expansion"]["contains"])


@pytest.mark.parametrize(("flt", "expected"), [
    ({"property": "concept", "op": "is-a", "value": "mammal"}, ["mammal", "dog", "cat", "whale", "bat"]),
    ({"property": "concept", "op": "descendent-of", "value": "mammal"}, ["dog", "cat", "whale", "bat"]),
    ({"property": "concept", "op": "is-not-a", "value": "mammal"}, ["bird", "hen"]),
    ({"property": "concept", "op": "generalizes", "value": "dog"}, ["mammal", "dog"]),
    ({"property": "code", "op": "regex", "value": "d.*"}, ["dog"]),
    ({"property": "sound", "op": "regex", "value": "m.*"}, ["cat"]),
    ({"property": "legs", "op": "=", "value": "4"}, ["dog", "cat"]),
    ({"property": "legs", "op": "in", "value": "0,2"}, ["whale", "hen"]),
    ({"property": "domestic", "op": "exists", "value": "true"}, ["dog", "cat", "hen"]),
    ({"property": "parent", "op": "=", "value": "bird"}, ["hen"]),
    ({"property": "concept", "op": "in", "value": "cat,hen"}, ["cat", "hen"]),
])
def test_expand_filters(animals, flt, expected):
    out = animals.expand(_vs({"system": ANIMALS, "filter": [flt]}))
    # "animal" (notSelectable) and "dodo" (inactive) never appear from intensional includes
    assert _codes(out) == expected


def test_filters_are_anded_and_exclude_applies(animals):
    vs = _vs({"system": ANIMALS, "filter": [{"property": "concept", "op": "is-a", "value": "mammal"},
                                            {"property": "legs", "op": "=", "value": "4"}]},
             exclude=[{"system": ANIMALS, "concept": [{"code": "cat"}]}])
    assert _codes(animals.expand(vs)) == ["dog"]


def test_inactive_abstract_and_active_only(animals):
    vs = _vs({"system": ANIMALS})
    assert "dodo" not in _codes(animals.expand(vs))
    assert "animal" not in _codes(animals.expand(vs))
    everything = animals.expand(vs, active_only=False)
    dodo = [c for c in everything["expansion"]["contains"] if c["code"] == "dodo"]
    assert dodo == [{"system": ANIMALS, "version": "1", "inactive": True, "code": "dodo", "display": "Dodo"}]
    explicit = _vs({"system": ANIMALS, "concept": [{"code": "dodo"}, {"code": "animal"}]})
    assert _codes(animals.expand(explicit)) == ["dodo", "animal"]
    assert _codes(animals.expand(explicit, active_only=True)) == ["animal"]


def test_display_language_and_designations(animals):
    out = animals.expand(_vs({"system": ANIMALS, "concept": [{"code": "dog"}, {"code": "hen"}]}),
                         display_language="de", include_designations=True)
    dog, hen = out["expansion"]["contains"]
    assert dog["display"] == "Hund" and dog["designation"] == [{"value": "Hund", "language": "de"}]
    assert hen["display"] == "Hen"


def test_nested_value_set_imports(animals):
    animals.load_resources([_vs({"system": ANIMALS, "filter": [{"property": "concept", "op": "is-a",
                                                                 "value": "mammal"}]},
                                url="http://example.org/vs/mammals"),
                            _vs({"system": ANIMALS, "filter": [{"property": "domestic", "op": "exists",
                                                                 "value": "true"}]},
                                url="http://example.org/vs/domestic")])
    both = _vs({"valueSet": ["http://example.org/vs/mammals", "http://example.org/vs/domestic"]})
    assert _codes(animals.expand(both)) == ["dog", "cat"]
    union = _vs({"valueSet": ["http://example.org/vs/mammals"]}, {"system": ANIMALS, "concept": [{"code": "hen"}]})
    assert _codes(animals.expand(union)) == ["mammal", "dog", "cat", "whale", "bat", "hen"]
    assert animals.in_value_set("http://example.org/vs/mammals", ANIMALS, "bat") is True
    assert animals.in_value_set("http://example.org/vs/mammals", ANIMALS, "hen") is False
    # implicit value sets: CodeSystem.valueSet and ?fhir_vs
    assert "whale" in _codes(animals.expand("http://example.org/vs/animals-all"))
    assert _codes(animals.expand(ANIMALS + "?fhir_vs=isa/bird")) == ["bird", "hen"]


def test_self_import_is_an_error_not_a_recursion(animals):
    animals.load_resources([_vs({"valueSet": ["http://example.org/vs/loop"]}, url="http://example.org/vs/loop")])
    with pytest.raises(TerminologyError):
        animals.expand("http://example.org/vs/loop")


def test_external_code_system(core_svc):
    with pytest.raises(UnknownCodeSystem):
        core_svc.expand("http://hl7.org/fhir/ValueSet/clinical-findings")
    with pytest.raises(UnknownValueSet):
        core_svc.expand("http://example.org/vs/none")


def test_in_value_set(core_svc):
    assert core_svc.in_value_set(GENDER_VS, GENDER, "male") is True
    assert core_svc.in_value_set(GENDER_VS, GENDER, "mail") is False
    assert core_svc.in_value_set(GENDER_VS, "http://example.org/other", "male") is False
    assert core_svc.in_value_set("http://example.org/vs/none", GENDER, "male") is None
    # SNOMED CT is not loaded: membership cannot be decided here
    vs = "http://hl7.org/fhir/ValueSet/clinical-findings"
    assert core_svc.in_value_set(vs, "http://snomed.info/sct", "404684003") is None
    # is-a membership over a real hierarchy (v3 ActCode encounter codes)
    enc = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"
    assert core_svc.in_value_set(enc, "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB") is True
    assert core_svc.in_value_set(enc, "http://terminology.hl7.org/CodeSystem/v3-ActCode", "CPT") is False


def test_validate_code_against_value_set(core_svc):
    r = core_svc.validate_code(GENDER_VS, GENDER, "female")
    assert r["result"] is True and r["display"] == "Female"
    r = core_svc.validate_code(GENDER_VS, GENDER, "female", display="Woman")
    assert r["result"] is False
    r = core_svc.validate_code(GENDER_VS, None, "other")  # system inferred from the compose
    assert r["result"] is True and r["system"] == GENDER
    r = core_svc.validate_code(GENDER_VS, "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB")
    assert r["result"] is False and "not in the value set" in r["message"]


def test_bad_regex_is_a_clear_error(animals):
    with pytest.raises(TerminologyError):
        animals.expand(_vs({"system": ANIMALS, "filter": [{"property": "code", "op": "regex", "value": "("}]}))
    with pytest.raises(TerminologyError):
        animals.expand(_vs({"system": ANIMALS, "filter": [{"property": "code", "op": "sounds-like", "value": "x"}]}))
