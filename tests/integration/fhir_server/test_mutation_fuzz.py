"""Mutated real inputs against the core on SQLite and PostgreSQL: never a 500, and a rejected transaction
leaves nothing behind.

Seeded (reproducible) mutations of Synthea transaction bundles (a key dropped, a value of the wrong JSON type,
a NUL or a control character, a broken reference, a request moved to another method or URL) and random
search parameters over every type the CapabilityStatement lists. Hypothesis fuzzes the HTTP surface with
synthetic bodies (tests/unit/fhir_server/test_fuzz.py); this one starts from real data, which reaches deeper
(transaction bookkeeping, conditional references, PostgreSQL's refusal of NUL). Both found 500s that plain
tests had missed.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
from typing import Any

from fhir_server.model import FhirRequest
from tests.conftest import shared_path

SEED = 20261129
ODD_VALUES: list[Any] = [None, 1, -1.5, True, "", "x", "a\u0000b", "a\u000cb", [], {}, [1], {"a": 1},
                         "urn:uuid:nope", "Patient/nope", "Patient?identifier=a|b", "2020-13-01", "9" * 30]
URLS = ["Patient", "Patient/x1", "Patient?identifier=a|b", "Patient?name=x&_count=1", "Patient/x1/_history/1",
        "Patient/$validate", "metadata", "", "Patient?", "_history", "Bogus/1", "Patient/" + "a" * 65,
        "Observation?subject=urn:uuid:0000", "Patient?_id=a%00"]


def mutate(rnd: random.Random, node: Any, depth: int = 0) -> None:
    if isinstance(node, dict) and node:
        key = rnd.choice(list(node))
        roll = rnd.random()
        if roll < 0.2:
            del node[key]
        elif roll < 0.5 or depth > 6:
            node[key] = copy.deepcopy(rnd.choice(ODD_VALUES))
        else:
            mutate(rnd, node[key], depth + 1)
    elif isinstance(node, list) and node:
        i = rnd.randrange(len(node))
        roll = rnd.random()
        if roll < 0.2:
            node.pop(i)
        elif roll < 0.35:
            node.append(copy.deepcopy(node[i]))
        elif roll < 0.5:
            node[i] = copy.deepcopy(rnd.choice(ODD_VALUES))
        else:
            mutate(rnd, node[i], depth + 1)


def mutated_bundles(n: int) -> list[dict[str, Any]]:
    rnd = random.Random(SEED)
    files = sorted(shared_path("corpora", "synthea-r4").glob("*.json.gz"))[:2]
    sources = [json.loads(gzip.open(f).read()) for f in files]
    out = []
    for _ in range(n):
        entries = copy.deepcopy(rnd.sample(rnd.choice(sources)["entry"], rnd.randint(2, 8)))
        for e in entries:
            if rnd.random() < 0.3:
                e["request"]["method"] = rnd.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
            if rnd.random() < 0.2:
                e["request"]["url"] = rnd.choice(URLS)
            if rnd.random() < 0.15:  # the envelope the transaction's bookkeeping reads before validation
                where = rnd.choice([e, e["request"], e.get("resource") or e])
                where[rnd.choice(["fullUrl", "resource", "resourceType", "ifNoneExist", "ifMatch", "url"])] = \
                    copy.deepcopy(rnd.choice(ODD_VALUES))
        bundle = {"resourceType": "Bundle", "type": rnd.choice(["transaction", "batch"]), "entry": entries}
        for _ in range(rnd.randint(1, 3)):
            mutate(rnd, bundle if rnd.random() < 0.1 else rnd.choice(entries))
        out.append(bundle)
    return out


def test_mutated_synthea_transactions_never_500(services: Any) -> None:
    router = services.router
    for n, bundle in enumerate(mutated_bundles(300)):
        before = services.repo.count_by_type()
        resp = router.handle(FhirRequest("POST", "", resource=bundle))
        assert resp.status < 500, (n, resp.resource, json.dumps(bundle)[:2000])
        if bundle.get("type") == "batch" and resp.status == 200:
            statuses = [e["response"]["status"] for e in resp.resource["entry"]]
            assert not any(s.startswith("5") for s in statuses), (n, statuses)
        if resp.status >= 400:
            assert resp.resource["resourceType"] == "OperationOutcome"
            if bundle.get("type") == "transaction":
                assert services.repo.count_by_type() == before, n  # all or nothing


def test_random_searches_never_500(services: Any) -> None:
    router = services.router
    rnd = random.Random(SEED)
    cap = router.handle(FhirRequest("GET", "metadata")).resource
    params = [(r["type"], p["name"]) for r in cap["rest"][0]["resource"] for p in r.get("searchParam", [])]
    values = ["", "x", "1", "-1", "1.5e3", "ge2020", "ap2020-02", "a|b", "|", "a|b|c|d", "a$b", "5||", "ne5",
              "Patient/1", "http://x/Patient/1", "1,2,,3", "\\", "true", "%", "'", "é", "9" * 40, "2020-02-30",
              "1e-400", "a\u0000b", "a\u0007b"]
    modifiers = ["", ":missing", ":exact", ":contains", ":text", ":not", ":above", ":below", ":in", ":of-type",
                 ":identifier", ":Patient", ":bogus"]
    for n in range(600):
        rt, name = rnd.choice(params)
        query = [(name + rnd.choice(modifiers), rnd.choice(values))]
        if rnd.random() < 0.3:
            query.append((rnd.choice(["_sort", "_include", "_revinclude", "_count", "_total"]),
                          rnd.choice([name, "-" + name, f"{rt}:{name}", "*", "0", "accurate"])))
        resp = router.handle(FhirRequest("GET", rt, query))
        assert resp.status < 500, (n, rt, query, resp.resource)
