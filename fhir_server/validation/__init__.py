"""FHIR R4 resource validation, driven by the shipped type model.

``validate_resource`` runs on every write (router) and behind ``$validate``.
It returns issues instead of raising, so callers decide: the write path turns
errors into a 422/400, ``$validate`` reports them all.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.definitions import get_model
from fhir_server.errors import Issue
from fhir_server.validation.bindings import BindingChecker, Terminology
from fhir_server.validation.rules import type_rules
from fhir_server.validation.structure import Rule, Walker

MODES = ("create", "update", "delete")


@cache
def _rules() -> dict[str, Rule]:
    return type_rules(get_model().resource_types())


@cache
def _default_bindings() -> BindingChecker:
    return BindingChecker(get_model())


def validate_resource(resource: dict[str, Any], *, mode: str = "create",
                      terminology: Terminology | None = None,
                      strict: bool = False, bindings: BindingChecker | None = None) -> list[Issue]:
    """Errors and warnings for ``resource``; an empty list means valid.

    ``mode`` follows ``$validate``: ``update`` also requires an id. ``delete``
    checks nothing about the content (the server allows every delete).
    Structure, datatypes, cardinality, primitive formats, reference syntax and
    required bindings are always errors. Business rules (invariants, reference
    target types, bundle rules, extension definitions and contexts) are errors
    only when ``strict`` (``$validate``, like the reference validator) and
    warnings on ordinary writes, where real feeds carry extensions we do not
    know (US Core, Synthea) and the official examples break a few rules.
    ``bindings`` replaces the required-binding checker (one that records its
    answers, when validating ahead of a transaction).
    """
    if mode not in MODES:
        return [Issue("error", "value", f"Unknown validation mode '{mode}' (expected create, update or delete)")]
    if mode == "delete":
        return []
    model = get_model()
    if bindings is None:
        bindings = _default_bindings() if terminology is None else BindingChecker(model, terminology)
    walker = Walker(model, bindings, _rules(), strict=strict)
    walker.resource(resource, str(resource.get("resourceType", "Resource")) if isinstance(resource, dict)
                    else "Resource")
    if mode == "update" and isinstance(resource, dict) and not resource.get("id"):
        walker.error(str(resource.get("resourceType")), "A resource must have an id to be updated", "required")
    return walker.issues


def has_errors(issues: list[Issue]) -> bool:
    return any(i.severity in ("error", "fatal") for i in issues)


__all__ = ["MODES", "Terminology", "has_errors", "validate_resource"]
