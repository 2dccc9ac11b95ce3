from __future__ import annotations

import pytest

from terminology.errors import TerminologyError, UnknownCode, UnknownCodeSystem

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
GENDER = "http://hl7.org/fhir/administrative-gender"


def test_lookup_core_code(core_svc):
    r = core_svc.lookup(GENDER, "female")
    assert r["display"] == "Female"
    assert r["name"] == "AdministrativeGender"
    assert r["version"] == "4.0.1"


def test_lookup_parents_children_properties(core_svc):
    r = core_svc.lookup(ACT, "AMB")
    parents = [p["value"] for p in r["property"] if p["code"] == "parent"]
    assert parents == ["_ActEncounterCode"]
    r = core_svc.lookup(ACT, "_ActEncounterCode")
    children = {p["value"] for p in r["property"] if p["code"] == "child"}
    assert {"AMB", "EMER", "IMP"} <= children
    assert r["abstract"] is True


def test_lookup_designations_and_language(animals):
    r = animals.lookup("http://example.org/cs/animals", "dog", display_language="de-CH")
    assert r["display"] == "Hund"
    assert r["designation"] == [{"value": "Hund", "language": "de"}]
    legs = [p for p in r["property"] if p["code"] == "legs"]
    assert legs == [{"code": "legs", "type": "integer", "value": "4", "system": None}]


def test_lookup_errors(core_svc):
    with pytest.raises(UnknownCode):
        core_svc.lookup(GENDER, "martian")
    with pytest.raises(UnknownCodeSystem):
        core_svc.lookup("http://example.org/nope", "x")


def test_subsumes(core_svc, animals):
    assert core_svc.subsumes(ACT, "_ActEncounterCode", "AMB") == "subsumes"
    assert core_svc.subsumes(ACT, "AMB", "_ActEncounterCode") == "subsumed-by"
    assert core_svc.subsumes(ACT, "AMB", "AMB") == "equivalent"
    assert core_svc.subsumes(ACT, "AMB", "EMER") == "not-subsumed"
    # transitive, and through a "parent" property rather than nesting
    assert animals.subsumes("http://example.org/cs/animals", "animal", "dog") == "subsumes"
    assert animals.subsumes("http://example.org/cs/animals", "mammal", "bat") == "subsumes"
    with pytest.raises(TerminologyError):
        core_svc.subsumes(ACT, "AMB", "no-such-code")


def test_codes_below_above(animals):
    cs = "http://example.org/cs/animals"
    assert animals.codes_below(cs, "mammal") == {"mammal", "dog", "cat", "whale", "bat"}
    assert animals.codes_above(cs, "dog") == {"dog", "mammal", "animal"}
    # unknown systems and codes fall back to the code itself (plain token match)
    assert animals.codes_below("http://snomed.info/sct", "404684003") == {"404684003"}


def test_validate_code_in_system(core_svc):
    assert core_svc.validate_code(None, GENDER, "male")["result"] is True
    r = core_svc.validate_code(None, GENDER, "male", display="Masculine")
    assert r["result"] is False and "Display" in r["message"]
    assert core_svc.validate_code(None, GENDER, "mail")["result"] is False
    r = core_svc.validate_code(None, "http://example.org/unknown", "x")
    assert r["result"] is False and r.get("unknown_system")


def test_reload_replaces_and_remove(animals, animals_cs):
    cs = "http://example.org/cs/animals"
    changed = {**animals_cs, "concept": [{"code": "fish", "display": "Fish"}]}
    animals.load_resources([changed])
    assert animals.codes_below(cs, "fish") == {"fish"}
    with pytest.raises(UnknownCode):
        animals.lookup(cs, "dog")
    animals.remove("CodeSystem", cs)
    with pytest.raises(UnknownCodeSystem):
        animals.lookup(cs, "fish")


def test_supplement_adds_designations(animals):
    animals.load_resources([{
        "resourceType": "CodeSystem", "url": "http://example.org/cs/animals-fr", "status": "active",
        "content": "supplement", "supplements": "http://example.org/cs/animals",
        "concept": [{"code": "cat", "designation": [{"language": "fr", "value": "Chat"}]}]}])
    assert animals.lookup("http://example.org/cs/animals", "cat", display_language="fr")["display"] == "Chat"
