from __future__ import annotations

import pytest

from terminology.loader import iter_core_resources
from terminology.service import TerminologyService


@pytest.fixture(scope="session")
def core_svc() -> TerminologyService:
    """The bundled core R4 terminology (generated from hl7.fhir.r4.examples) in in-memory SQLite."""
    svc = TerminologyService("sqlite://")
    svc.load_resources(iter_core_resources())
    return svc


@pytest.fixture()
def svc() -> TerminologyService:
    return TerminologyService("sqlite://")


# A small code system written for the filter operators the core content barely uses.
ANIMALS = {
    "resourceType": "CodeSystem", "url": "http://example.org/cs/animals", "version": "1", "name": "Animals",
    "status": "active", "content": "complete", "caseSensitive": True,
    "valueSet": "http://example.org/vs/animals-all",
    "property": [{"code": "legs", "type": "integer"}, {"code": "domestic", "type": "boolean"},
                 {"code": "sound", "type": "string"}],
    "concept": [
        {"code": "animal", "display": "Animal", "property": [{"code": "notSelectable", "valueBoolean": True}],
         "concept": [
             {"code": "mammal", "display": "Mammal", "concept": [
                 {"code": "dog", "display": "Dog", "designation": [{"language": "de", "value": "Hund"}],
                  "property": [{"code": "legs", "valueInteger": 4}, {"code": "domestic", "valueBoolean": True},
                               {"code": "sound", "valueString": "woof"}]},
                 {"code": "cat", "display": "Cat", "designation": [{"language": "de", "value": "Katze"}],
                  "property": [{"code": "legs", "valueInteger": 4}, {"code": "domestic", "valueBoolean": True},
                               {"code": "sound", "valueString": "meow"}]},
                 {"code": "whale", "display": "Blue whale", "property": [{"code": "legs", "valueInteger": 0}]},
             ]},
             {"code": "bird", "display": "Bird", "concept": [
                 {"code": "hen", "display": "Hen", "property": [{"code": "legs", "valueInteger": 2},
                                                                {"code": "domestic", "valueBoolean": True}]},
                 {"code": "dodo", "display": "Dodo", "property": [{"code": "inactive", "valueBoolean": True}]},
             ]},
         ]},
        {"code": "bat", "display": "Bat", "property": [{"code": "parent", "valueCode": "mammal"}]},
    ],
}


@pytest.fixture()
def animals_cs() -> dict:
    return ANIMALS


@pytest.fixture()
def animals(svc: TerminologyService) -> TerminologyService:
    svc.load_resources([ANIMALS])
    return svc
