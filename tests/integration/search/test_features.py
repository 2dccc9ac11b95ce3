"""Search features beyond matching, on the shared corpus: errors, lenient handling, result shaping,
totals, POST _search, system and compartment search, Patient/$everything and Observation/$lastn.

Expected sets still come from the independent evaluator.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from fhir_server.model import FhirRequest
from tests.integration.search.conftest import World
from tests.integration.search.evalpath import dates
from tests.integration.search.test_differential import run_all

PID = "ba18818d-faef-44cd-9744-b12d8973d402"  # Adalberto Hartmann, Synthea


def get(world: World, path: str, query: list[tuple[str, str]], headers: dict[str, str] | None = None) -> Any:
    return world.services.router.handle(FhirRequest("GET", path, query, headers or {}))


@pytest.mark.parametrize("query", [
    [("nonsense", "1")], [("birthdate", "not-a-date")], [("birthdate", "xx2000")], [("_count", "many")],
    [("gender:exact", "male")], [("_sort", "nonsense")], [("_include", "Patient:nonsense")],
    [("_total", "sometimes")], [("_summary", "partial")], [("general-practitioner.nonsense", "x")],
    [("_has:Observation:nonsense:code", "x")], [("family", "")], [("name:missing", "maybe")],
    [("identifier:of-type", "just-one-part")], [("_query", "everything")], [("_filter", "name eq x")], [("birthdate", "2000-13-45")], [("_id:exact", "x")],
])
def test_bad_parameters_are_400_operation_outcomes(world: World, query: list[tuple[str, str]]) -> None:
    resp = get(world, "Patient", query)
    assert resp.status == 400, (query, resp.status, resp.resource)
    assert resp.resource["resourceType"] == "OperationOutcome"
    assert resp.resource["issue"][0]["severity"] in ("error", "fatal")


@pytest.mark.parametrize(("path", "query"), [
    ("Patient", "organization.partof.partof.partof.name=x"),  # four links
    ("Patient", "_has:Observation:patient:_has:Provenance:target:_has:AuditEvent:entity:_has:Provenance:target:agent=x"),
    ("Patient", "_has:Observation:patient:subject:Patient.organization.partof.name=x"),  # _has + chain: four
    ("Provenance", "target.subject.subject.identifier=x"),  # 5,241 target types without :Type
])
def test_chains_past_the_limits_are_400_too_costly(world: World, path: str, query: str) -> None:
    """Before the limits: SQLite's 'parser stack overflow' (a 500) at four links, and 5-25 s of SQL for a
    chain through references to Any."""
    resp = get(world, path, parse_qsl(query))
    assert resp.status == 400, resp.resource
    assert resp.resource["issue"][0]["code"] == "too-costly"
    assert query.split("=")[0] in resp.resource["issue"][0]["diagnostics"]


def test_chains_within_the_limits_run(world: World) -> None:
    resp = get(world, "Patient", parse_qsl("organization.partof.partof.name=x"))  # three links
    assert resp.status == 200, resp.resource
    resp = get(world, "Provenance", parse_qsl("target.subject.identifier=x"))  # 993 target types: allowed
    assert resp.status == 200, resp.resource
    resp = get(world, "Observation", parse_qsl("subject.organization.partof.name=x"), {"prefer": "handling=lenient"})
    assert resp.status == 200


@pytest.mark.parametrize("drive_up_to", [0, 10_000])
def test_chains_through_several_target_types_match_either_way(world: World, monkeypatch: pytest.MonkeyPatch,
                                                              drive_up_to: int) -> None:
    """On PostgreSQL, up to CHAIN_DRIVE_UP_TO referring rows the chain is one index range per target (a UNION
    ALL of the target types), past it one reference lookup walked in order: the same matches (SQLite always
    takes the one lookup)."""
    from fhir_server.storage import search_sql

    monkeypatch.setattr(search_sql, "CHAIN_DRIVE_UP_TO", drive_up_to)
    found = 0
    for path, q in [("Observation", "subject.name=peter"), ("MedicationRequest", "subject.name=peter"),
                    ("Patient", "general-practitioner.name=adam"), ("Observation", "subject.name=nobody-at-all"),
                    ("Observation", "encounter.participant.name=dr&code=8302-2")]:
        query = parse_qsl(q)
        resp = get(world, path, [*query, ("_count", "1000")])
        assert resp.status == 200, resp.resource
        got = {e["resource"]["id"] for e in resp.resource.get("entry", []) if e["search"]["mode"] == "match"}
        assert got == world.ev.search(path, query), q
        found += len(got)
    assert found > 20


def test_lenient_handling_ignores_unknown_and_says_so(world: World) -> None:
    resp = get(world, "Patient", [("nonsense", "1"), ("family", "hart")], {"prefer": "handling=lenient"})
    assert resp.status == 200
    bundle = resp.resource
    self_url = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    applied = parse_qsl(urlsplit(self_url).query)
    assert applied == [("family", "hart")]
    matches = {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"}
    assert matches == world.ev.search("Patient", [("family", "hart")])
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "nonsense" in outcome[0]["resource"]["issue"][0]["diagnostics"]


def test_lenient_handling_drops_malformed_values(world: World) -> None:
    query = [("birthdate", "not-a-date"), ("gender", "male"), ("_count", "1000")]
    strict = get(world, "Patient", query)
    assert strict.status == 400
    resp = get(world, "Patient", query, {"prefer": "handling=lenient"})
    assert resp.status == 200
    matches = {e["resource"]["id"] for e in resp.resource["entry"] if e["search"]["mode"] == "match"}
    assert matches == world.ev.search("Patient", [("gender", "male")])


def test_summary_count_and_totals(world: World) -> None:
    expected = len(world.ev.search("Observation", [("category", "laboratory")]))
    count = get(world, "Observation", [("category", "laboratory"), ("_summary", "count")]).resource
    assert count["total"] == expected and "entry" not in count
    accurate = get(world, "Observation", [("category", "laboratory"), ("_total", "accurate"), ("_count", "5")])
    assert accurate.resource["total"] == expected and len(accurate.resource["entry"]) == 5
    zero = get(world, "Observation", [("category", "laboratory"), ("_count", "0")]).resource
    assert zero["total"] == expected and "entry" not in zero
    none = get(world, "Observation", [("category", "laboratory"), ("_total", "none"), ("_count", "5")]).resource
    assert "total" not in none
    estimate = get(world, "Observation", [("category", "laboratory"), ("_total", "estimate"), ("_count", "5")])
    assert estimate.resource["total"] > 0
    # default: exact while the match count is at most 1000, left out above (page one stays fast)
    vitals = len(world.ev.search("Observation", [("category", "vital-signs")]))
    assert vitals <= 1000 < expected
    default = get(world, "Observation", [("category", "vital-signs"), ("_count", "5")]).resource
    assert default["total"] == vitals
    assert "total" not in get(world, "Observation", [("category", "laboratory"), ("_count", "5")]).resource


def test_summary_and_elements_shape_entries(world: World) -> None:
    summary = get(world, "Patient", [("_id", PID), ("_summary", "true")]).resource["entry"][0]["resource"]
    assert any(t.get("code") == "SUBSETTED" for t in summary["meta"].get("tag", []))
    assert "name" in summary and "communication" not in summary
    data = get(world, "Patient", [("_id", "example"), ("_summary", "data")]).resource["entry"][0]["resource"]
    assert "text" not in data and "name" in data
    text = get(world, "Patient", [("_id", "example"), ("_summary", "text")]).resource["entry"][0]["resource"]
    assert "text" in text and "address" not in text
    elements = get(world, "Observation", [("code", "8302-2"), ("_elements", "code,subject"), ("_count", "3")])
    for e in elements.resource["entry"]:
        # the requested elements plus the mandatory ones (Observation.status is 1..1)
        assert set(e["resource"]) - {"resourceType", "id", "meta"} == {"code", "subject", "status"}


def test_post_search_with_form_body_equals_get(world: World) -> None:
    body = urlencode([("code", "8302-2"), ("date", "ge2015")]).encode()
    post = world.services.router.handle(FhirRequest(
        "POST", "Observation/_search", [("_count", "1000")],
        {"content-type": "application/x-www-form-urlencoded"}, body=body))
    assert post.status == 200
    got = {e["resource"]["id"] for e in post.resource["entry"]}
    assert got == world.ev.search("Observation", [("code", "8302-2"), ("date", "ge2015")])


def test_system_search_with_type(world: World) -> None:
    matches, _ = run_all(world.services, "", [("_type", "Patient,Practitioner"), ("name", "peter,adam")])
    want = {("Patient", i) for i in world.ev.search("Patient", [("name", "peter,adam")])} | {
        ("Practitioner", i) for i in world.ev.search("Practitioner", [("name", "peter,adam")])}
    assert set(matches) == want and want
    tagged, _ = run_all(world.services, "", [("_type", "Observation,Condition"), ("_security", "TBOO")])
    assert set(tagged) == {("Condition", i) for i in world.ev.search("Condition", [("_security", "TBOO")])}


def test_compartment_search(world: World) -> None:
    got, _ = run_all(world.services, f"Patient/{PID}/Observation", [("code", "8302-2")])
    want = {i for i, o in world.ev.by_type["Observation"].items()
            if any((t, x) == ("Patient", PID) for c in ("subject", "performer") for t, x, _ in world.ev.refs(o, c))}
    want &= world.ev.search("Observation", [("code", "8302-2")])
    assert {i for _, i in got} == want and want


def test_patient_everything_pages_and_filters(world: World) -> None:
    got, _ = run_all(world.services, f"Patient/{PID}/$everything", [("_count", "50")])
    ids = set(got)
    assert ("Patient", PID) in ids
    for rt in ("Observation", "Encounter", "Condition", "Claim", "Immunization"):
        want = {("" + rt, i) for i in world.ev.search(rt, [("patient", PID)])}
        assert want and want <= ids, rt
    assert len(got) == len(ids)
    only, _ = run_all(world.services, f"Patient/{PID}/$everything", [("_type", "Condition,Patient")])
    assert {t for t, _ in only} == {"Condition", "Patient"}
    assert {i for t, i in only if t == "Condition"} == world.ev.search("Condition", [("patient", PID)])
    since, _ = run_all(world.services, f"Patient/{PID}/$everything", [("_since", "2999-01-01")])
    assert set(since) <= {("Patient", PID)}
    # _type, _since and start/end must survive paging (the next links repeat them)
    paged, _ = run_all(world.services, f"Patient/{PID}/$everything",
                       [("_type", "Observation,Patient"), ("_since", "2000-01-01"), ("_count", "7")])
    assert {t for t, _ in paged} == {"Observation", "Patient"} and len(paged) == len(set(paged))
    assert {i for t, i in paged if t == "Observation"} == world.ev.search("Observation", [("patient", PID)])
    window = [("start", "2015-01-01"), ("end", "2016-12-31")]
    dated, _ = run_all(world.services, f"Patient/{PID}/$everything",
                       [("_type", "Observation,Encounter,Condition")] + window + [("_count", "9")])
    for rt in ("Observation", "Encounter"):
        in_window = world.ev.search(rt, [("patient", PID), ("date", "ge2015-01-01"), ("date", "le2016-12-31")])
        in_window |= world.ev.search(rt, [("patient", PID), ("date:missing", "true")])
        assert {i for t, i in dated if t == rt} == in_window and in_window, rt
    # Condition has no ``date`` parameter: every one of the patient's conditions stays
    assert {i for t, i in dated if t == "Condition"} == world.ev.search("Condition", [("patient", PID)])


def test_lastn_returns_latest_per_code(world: World) -> None:
    resp = get(world, "Observation/$lastn", [("patient", PID), ("category", "vital-signs"), ("max", "2")])
    assert resp.status == 200
    got = {e["resource"]["id"] for e in resp.resource["entry"]}
    candidates = world.ev.search("Observation", [("patient", PID), ("category", "vital-signs")])
    by_code: dict[str, list[tuple[float, str]]] = {}
    for i in candidates:
        o = world.ev.by_type["Observation"][i]
        when = max(d[1] for d in dates(o.get("effectiveDateTime") or o.get("effectivePeriod") or ""))
        by_code.setdefault(o["code"]["coding"][0]["code"], []).append((when, i))
    want_dates = {c: sorted(v, reverse=True)[:2] for c, v in by_code.items()}
    assert len(got) == sum(len(v) for v in want_dates.values())
    for c, v in want_dates.items():
        got_c = sorted(when for when, i in by_code[c] if i in got)
        assert got_c == sorted(when for when, _ in v), c


def test_bundle_shape(world: World) -> None:
    bundle = get(world, "Observation", [("code", "8302-2"), ("_count", "2"), ("_include", "Observation:subject")])
    b = bundle.resource
    assert b["type"] == "searchset"
    modes = {e["search"]["mode"] for e in b["entry"]}
    assert modes == {"match", "include"}
    for e in b["entry"]:
        assert e["fullUrl"].endswith(f"/{e['resource']['resourceType']}/{e['resource']['id']}")
    nxt = next(link["url"] for link in b["link"] if link["relation"] == "next")
    assert "_cursor=" in nxt and "_include=Observation%3Asubject" in nxt
    bad = get(world, "Observation", [("code", "8302-2"), ("_cursor", "bm90LWEtY3Vyc29y")])
    assert bad.status == 400


def test_last_updated_and_id(world: World) -> None:
    all_patients = world.ev.search("Patient", [])
    got, _ = run_all(world.services, "Patient", [("_lastUpdated", "gt2000-01-01")])
    assert {i for _, i in got} == all_patients
    none, _ = run_all(world.services, "Patient", [("_lastUpdated", "lt2000-01-01")])
    assert none == []
