"""SMART scope enforcement on the FHIR API (filled in by the SMART issue).

The router calls these hooks at every interaction; with an unrestricted
``RequestContext`` (authorization off, internal system callers) they allow all.
"""

from __future__ import annotations

from fhir_server.model import JsonDict, RequestContext


def check_interaction(ctx: RequestContext, interaction: str, resource_type: str | None) -> None:
    """Raise 403 when ``ctx`` may not perform ``interaction`` (read/search/create/update/delete/...)
    on ``resource_type``."""
    return None


def check_resource(ctx: RequestContext, interaction: str, resource: JsonDict) -> None:
    """Raise 403 when a concrete resource (read result, or body to write) is outside the grant,
    e.g. outside the patient compartment of a patient-level token."""
    return None


def search_restrictions(ctx: RequestContext, resource_type: str) -> list[tuple[str, str]]:
    """Extra search parameters ANDed into every search of ``resource_type`` for ``ctx``
    (patient compartment, granular ``?category=`` scopes)."""
    return []
