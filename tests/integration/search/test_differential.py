"""Differential search suite: the SQL engine against the independent evaluator, on SQLite and PostgreSQL.

The corpus (10 Synthea patients and the R4 examples, ~3,900 resources) is loaded once per
database; each case runs through ``router.handle`` following every ``next`` link and the ids
returned are compared with what ``evaluator.Evaluator`` computes from the raw JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from fhir_server.model import FhirRequest
from tests.integration.search import cases, corpus
from tests.integration.search.conftest import World


def parse_query(q: str) -> list[tuple[str, str]]:
    out = []
    for part in q.split("&"):
        k, _, v = part.partition("=")
        out.append((unquote(k), unquote(v)))
    return out


def run_all(services: Any, rt: str, query: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[Any]]:
    """Every page of a search: the matches in order, the included (type, id) per page."""
    matches: list[tuple[str, str]] = []
    included: list[tuple[str, str]] = []
    q = query
    for _ in range(200):
        resp = services.router.handle(FhirRequest("GET", rt, q))
        assert resp.status == 200, (query, resp.resource)
        bundle = resp.resource
        for e in bundle.get("entry", []):
            key = (e["resource"]["resourceType"], e["resource"]["id"])
            mode = e["search"]["mode"]
            assert mode in ("match", "include"), e
            (matches if mode == "match" else included).append(key)
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            return matches, included
        q = parse_qsl(urlsplit(nxt[0]).query, keep_blank_values=True)
    raise AssertionError("paging did not end")


def ids(case: tuple[str, str]) -> str:
    return f"{case[0]}?{case[1]}"


ALL_CASES = cases.HAND + cases.generated(corpus.synthea_resources()) if Path(
    corpus.root().parent / "shared").exists() else cases.HAND


@pytest.mark.parametrize("case", ALL_CASES, ids=ids)
def test_matches(world: World, case: tuple[str, str]) -> None:
    rt, raw = case
    query = parse_query(raw)
    expected = world.ev.search(rt, query)
    got, _ = run_all(world.services, rt, query)
    assert len(got) == len(set(got)), "a resource came back twice"
    got_ids = {i for t, i in got if t == rt}
    assert got_ids == expected, f"missing {sorted(expected - got_ids)[:5]} extra {sorted(got_ids - expected)[:5]}"


@pytest.mark.parametrize("case", cases.SORTS, ids=ids)
def test_sort(world: World, case: tuple[str, str]) -> None:
    rt, raw = case
    query = parse_query(raw)
    got, _ = run_all(world.services, rt, query)
    assert {i for _, i in got} == world.ev.search(rt, query)
    keys = [k.strip() for v in [dict(query)["_sort"]] for k in v.split(",")]
    rows = [[world.ev.sort_key(world.ev.by_type[rt][i], k.lstrip("-"), k.startswith("-")) for k in keys]
            for _, i in got]
    for a, b in zip(rows, rows[1:], strict=False):
        for k, x, y in zip(keys, a, b, strict=True):
            desc = k.startswith("-")
            if x == y:
                continue
            # resources without a value sort last in both directions
            ok = (y is None) if (x is None or y is None) else ((x > y) if desc else (x < y))
            assert ok, f"{k}: {x!r} before {y!r}"
            break


@pytest.mark.parametrize("case", cases.INCLUDES, ids=ids)
def test_includes(world: World, case: tuple[str, str]) -> None:
    rt, raw = case
    query = parse_query(raw)
    got, included = run_all(world.services, rt, query)
    expected = world.ev.search(rt, query)
    assert {i for _, i in got} == expected
    # per page, includes are computed from that page's matches; compare over the union
    found = set(got)
    want: set[tuple[str, str]] = set()
    frontier = set(found)
    incs = [(k, v) for k, v in query if k.startswith(("_include", "_revinclude"))]
    iterated = False
    for depth in range(4):
        new: set[tuple[str, str]] = set()
        for k, v in incs:
            if depth and not k.endswith(":iterate"):
                continue
            new |= world.ev.include(frontier, v, reverse=k.startswith("_revinclude"))
        new -= found | want
        if not new:
            break
        iterated = iterated or depth > 0
        want |= new
        frontier = new
    assert set(included) - found == want
    # an :iterate case must reach past the first level in this corpus, or it proves nothing about iterating
    assert iterated or not any(k.endswith(":iterate") for k, _ in incs), f"{case}: the iterate step adds nothing"


@pytest.mark.parametrize("case", cases.PAGES, ids=ids)
def test_paging(world: World, case: tuple[str, str]) -> None:
    rt, raw = case
    query = parse_query(raw)
    count = int(dict(query)["_count"])
    pages = 0
    q: list[tuple[str, str]] = query
    seen: list[str] = []
    while True:
        bundle = world.services.router.handle(FhirRequest("GET", rt, q)).resource
        page = [e["resource"]["id"] for e in bundle.get("entry", [])]
        assert len(page) <= count
        seen += page
        pages += 1
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            break
        assert "_offset" not in nxt[0] and "_cursor=" in nxt[0]
        assert len(page) == count
        q = parse_qsl(urlsplit(nxt[0]).query, keep_blank_values=True)
    assert len(seen) == len(set(seen))
    assert set(seen) == world.ev.search(rt, query)
    assert pages == max(1, -(-len(seen) // count)) or len(seen) % count == 0


HAS_CASES = [c for c in ALL_CASES if "_has:" in c[1]]


@pytest.mark.parametrize("case", HAS_CASES, ids=ids)
def test_has_probe_path_matches(world: World, case: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same `_has` cases with the per-candidate probe forced (the path a common code takes at scale)."""
    from fhir_server.storage import search_sql

    monkeypatch.setattr(search_sql, "HAS_PROBE_ABOVE", 0)
    rt, raw = case
    query = parse_query(raw)
    got, _ = run_all(world.services, rt, query)
    assert {i for t, i in got if t == rt} == world.ev.search(rt, query)
