"""Concurrent writers with If-Match: exactly one wins per version, no lost update (both databases)."""

from __future__ import annotations

import threading
from typing import Any

from fhir_server.model import FhirRequest

THREADS = 8
ROUNDS = 3


def test_if_match_writers_never_lose_updates(services: Any) -> None:
    svc = services
    svc.router.handle(FhirRequest("PUT", "Patient/race", resource={"resourceType": "Patient", "id": "race",
                                                                   "name": [{"family": "v0"}]}))
    for rnd in range(ROUNDS):
        version = svc.repo.read("Patient", "race").version
        barrier = threading.Barrier(THREADS)
        statuses: list[int] = []
        lock = threading.Lock()

        def writer(n: int, version: int = version, rnd: int = rnd, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            resp = svc.router.handle(FhirRequest("PUT", "Patient/race", headers={"If-Match": f'W/"{version}"'},
                                                 resource={"resourceType": "Patient", "id": "race",
                                                           "name": [{"family": f"r{rnd}-t{n}"}]}))
            with lock:
                statuses.append(resp.status)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses.count(200) == 1, statuses
        assert all(s in (409, 412) for s in statuses if s != 200), statuses
        current = svc.repo.read("Patient", "race")
        assert current.version == version + 1
    # every accepted write is in the history, in order, none lost
    hist = svc.router.handle(FhirRequest("GET", "Patient/race/_history")).resource
    assert hist["total"] == ROUNDS + 1
    assert [int(e["resource"]["meta"]["versionId"]) for e in hist["entry"]] == list(range(ROUNDS + 1, 0, -1))
