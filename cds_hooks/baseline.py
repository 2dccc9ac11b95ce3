"""A service that always answers ``{"cards": []}``: the benchmark's round-trip baseline.

Not in ``cds_hooks.services`` so production never lists it; enable it with
``cds_service_modules=cds_hooks.baseline``.
"""

from __future__ import annotations

from typing import Any

from cds_hooks.cards import CdsResponse
from cds_hooks.prefetch import PrefetchData
from cds_hooks.registry import CdsService, ServiceEnv


class NoCards(CdsService):
    id = "baseline-no-cards"
    hook = "patient-view"
    title = "Baseline (no cards)"
    description = "Returns no cards; measures the HTTP, JWT and validation cost alone."

    def invoke(self, request: dict[str, Any], data: PrefetchData, env: ServiceEnv) -> CdsResponse:
        return CdsResponse()


SERVICE = NoCards()
