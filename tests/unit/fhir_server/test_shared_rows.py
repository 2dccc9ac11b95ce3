"""Parameters that are unions of others (combo-*, phonetic) store their rows once and search under both.

The search differential (tests/integration/search) checks every form of combo-* search against an
independent evaluator; here: which parameters share, that the rows are really not written twice, custom
SearchParameters, and databases whose rows were written before sharing existed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest

from fhir_server.model import FhirRequest
from fhir_server.search.extract import Extractor, identity
from fhir_server.search.registry import SearchParamRegistry, default_registry
from fhir_server.search.shared_rows import SharedRows
from tests.integration.search.corpus import package_resource

KINDS = ("string", "token", "reference", "date", "number", "quantity", "uri", "composite")


def _codes(shared: SharedRows, rt: str, code: str) -> tuple[list[str], int]:
    sp = default_registry().get(rt, code)
    assert sp is not None
    sharing = shared.of(rt, sp)
    return sorted(q.code for q in sharing.covered_by), len(sharing.parts)


def test_r4_unions_are_covered_by_their_branches() -> None:
    shared = SharedRows(default_registry())
    assert _codes(shared, "Observation", "combo-code") == (["code", "component-code"], 0)
    assert _codes(shared, "Observation", "combo-value-quantity") == (["component-value-quantity", "value-quantity"], 0)
    assert _codes(shared, "Observation", "combo-code-value-quantity") == (
        ["code-value-quantity", "component-code-value-quantity"], 0)
    assert _codes(shared, "Patient", "phonetic") == (["name"], 0)  # the same expression as name
    assert _codes(shared, "Patient", "name") == ([], 1)
    assert _codes(shared, "Organization", "name") == (["phonetic"], 1)  # name | alias: alias stays its own
    assert _codes(shared, "Observation", "code") == ([], 1)
    registry = default_registry()
    for rt in registry.resource_types:
        for sp in registry.for_type(rt).values():
            sharing = shared.of(rt, sp)
            assert sp.type != "reference" or not sharing.covered_by  # chains, _has and _include read these
            for q in sharing.covered_by:  # a covering parameter writes all its rows itself
                assert not shared.of(rt, q).covered_by and q.type == sp.type


def test_a_blood_pressure_writes_each_row_once() -> None:
    bp = package_resource("Observation-blood-pressure.json")
    registry = default_registry()
    rows = Extractor(registry).extract(bp)
    naive = Extractor(registry)
    naive.shared._compute = lambda _rt: {}  # type: ignore[method-assign] - every parameter all its branches
    before = naive.extract(bp)
    combo = {identity("Observation", c) for c in ("combo-code", "combo-code:text", "combo-value-quantity",
                                                   "combo-code-value-quantity")}
    assert not [r for kind in KINDS for r in getattr(rows, kind) if r[0] in combo]
    assert [r for kind in KINDS for r in getattr(before, kind) if r[0] in combo]
    assert sum(len(getattr(rows, k)) for k in KINDS) < sum(len(getattr(before, k)) for k in KINDS)
    for kind in KINDS:  # apart from the combo rows, the same rows
        assert sorted(map(repr, getattr(rows, kind))) == sorted(
            repr(r) for r in getattr(before, kind) if r[0] not in combo)


def _search(services: Any, query: str) -> list[str]:
    resp = services.router.handle(FhirRequest("GET", "Observation", parse_qsl(query)))
    assert resp.status == 200, resp.resource
    return [e["resource"]["id"] for e in resp.resource.get("entry", []) if e["search"]["mode"] == "match"]


def test_rows_written_before_sharing_still_match_once(services_factory: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    services = services_factory()
    bp = package_resource("Observation-blood-pressure.json")
    monkeypatch.setattr(SharedRows, "_compute", lambda self, rt: {})  # an older server: all rows, all params
    old = services.router.handle(FhirRequest("PUT", "Observation/bp-old", resource={**bp, "id": "bp-old"}))
    assert old.status == 201
    monkeypatch.undo()
    services.repo.extractor.shared = SharedRows(services.repo.registry)  # (the old one cached its tables)
    new = services.router.handle(FhirRequest("PUT", "Observation/bp-new", resource={**bp, "id": "bp-new"}))
    assert new.status == 201
    for query in ("combo-code=8480-6", "combo-code=85354-9", "combo-code:text=systolic",
                  "combo-value-quantity=gt100", "combo-code-value-quantity=8480-6$gt100",
                  "combo-code:missing=false"):
        assert sorted(_search(services, query)) == ["bp-new", "bp-old"], query
    assert _search(services, "combo-code:missing=true") == []
    assert _search(services, "combo-code-value-quantity=8480-6$gt200") == []
    total = services.router.handle(FhirRequest("GET", "Observation", [("combo-code", "8480-6"),
                                                                      ("_total", "accurate")]))
    assert total.resource["total"] == 2
    ordered = _search(services, "combo-value-quantity=gt0&_sort=-combo-value-quantity")
    assert sorted(ordered) == ["bp-new", "bp-old"]


def test_a_custom_union_parameter_is_searched_through_its_branches(services_factory: Any) -> None:
    services = services_factory()
    created = services.router.handle(FhirRequest("POST", "SearchParameter", resource={
        "resourceType": "SearchParameter", "url": "http://example.org/sp/code-or-category", "name": "CodeOrCategory",
        "status": "active", "description": "code or category", "code": "code-or-category", "base": ["Observation"],
        "type": "token", "expression": "Observation.code | Observation.category"}))
    assert created.status == 201, created.resource
    registry: SearchParamRegistry = services.repo.registry
    sp = registry.get("Observation", "code-or-category")
    assert sp is not None
    assert sorted(q.code for q in services.repo.extractor.shared.of("Observation", sp).covered_by) == [
        "category", "code"]
    bp = package_resource("Observation-blood-pressure.json")
    assert services.router.handle(FhirRequest("PUT", "Observation/bp", resource={**bp, "id": "bp"})).status == 201
    rows = services.repo.extractor.extract({**bp, "id": "bp"})
    assert not [r for r in rows.token if r[0] == identity("Observation", "code-or-category")]
    assert _search(services, "code-or-category=85354-9") == ["bp"]  # its code
    assert _search(services, "code-or-category=vital-signs") == ["bp"]  # its category
    assert _search(services, "code-or-category:not=vital-signs") == []
    assert _search(services, "code-or-category=8480-6") == []  # a component code is neither


def test_a_custom_parameter_never_stands_in_for_another(services_factory: Any) -> None:
    services = services_factory()
    created = services.router.handle(FhirRequest("POST", "SearchParameter", resource={
        "resourceType": "SearchParameter", "url": "http://example.org/sp/a-code", "name": "ACode",
        "status": "active", "description": "code again", "code": "a-code", "base": ["Observation"],
        "type": "token", "expression": "Observation.code"}))  # sorts before "code", same expression
    assert created.status == 201, created.resource
    registry: SearchParamRegistry = services.repo.registry
    shared = services.repo.extractor.shared
    code, a_code = registry.get("Observation", "code"), registry.get("Observation", "a-code")
    assert code is not None and a_code is not None
    assert shared.of("Observation", code).covered_by == ()  # still writes its own rows
    assert [q.code for q in shared.of("Observation", a_code).covered_by] == ["code"]
    assert sorted(q.code for q in shared.of("Observation", registry.get("Observation", "combo-code")).covered_by
                  ) == ["code", "component-code"]
