"""Request validation: a malformed CDS Hooks call is a 400 naming every problem.

Mirrors what the FHIR validator's CDSHooksRequest logical model reports for the
corpus cases (bare ids, ``{type}/{id}`` selections, fullUrl on draft orders,
prefetch values that are resources, valid FHIR datatypes and required codes).
"""

from __future__ import annotations

import re
from typing import Any

from cds_hooks.errors import CdsError, bad_request
from cds_hooks.hooks import HOOKS, USER_TYPES
from fhir_server.validation.primitives import ID_RE

REF_RE = re.compile(rf"[A-Z][A-Za-z]+/{ID_RE.pattern}")

# Required bindings of the order resources we act on (R4 value sets).
REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("MedicationRequest", "status"): frozenset(
        {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}),
    ("MedicationRequest", "intent"): frozenset(
        {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order",
         "option"}),
    ("ServiceRequest", "status"): frozenset(
        {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}),
    ("ServiceRequest", "intent"): frozenset(
        {"proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order",
         "instance-order", "option"}),
}


def _resource_problems(res: Any, path: str, deep: bool) -> list[str]:
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        return [f"{path}: unable to find resourceType property (a FHIR resource is required)"]
    rtype = res["resourceType"]
    out: list[str] = []
    if "id" in res and (not isinstance(res["id"], str) or not ID_RE.fullmatch(res["id"])):
        out.append(f"{path}.id is not a valid FHIR id")
    for (t, elem), allowed in REQUIRED_CODES.items():
        if t == rtype and elem in res and res[elem] not in allowed:
            out.append(f"{path}.{elem}: {res[elem]!r} is not in the required value set")
    if deep:
        out.extend(_model_problems(res, path))
    return out


def _model_problems(res: dict[str, Any], path: str) -> list[str]:
    """Datatype checks with the R4B models (R4-compatible for these resources)."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(res["resourceType"])
    except (KeyError, ValueError, AttributeError):  # fhir.resources raises all three for names it lacks
        return [f"{path}: unknown resourceType {res['resourceType']!r}"]
    try:
        model.model_validate(res)
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError and friends
        errors = getattr(exc, "errors", None)
        if callable(errors):
            return [f"{path}.{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}"
                    for e in errors()[:5]]
        return [f"{path}: {exc}"]
    return []


def _bundle_problems(b: Any, path: str) -> list[str]:
    if not isinstance(b, dict) or b.get("resourceType") != "Bundle":
        return [f"{path} must be a FHIR Bundle"]
    out: list[str] = []
    needs_full_url = b.get("type") not in ("transaction", "batch")
    for i, e in enumerate(b.get("entry") or []):
        ep = f"{path}.entry[{i}]"
        if not isinstance(e, dict):
            out.append(f"{ep} must be an object")
            continue
        if needs_full_url and not e.get("fullUrl"):
            out.append(f"{ep}: bundle entry missing fullUrl")
        out.extend(_resource_problems(e.get("resource"), f"{ep}.resource", deep=True))
    return out


def validate_request(body: Any, expected_hook: str) -> None:
    """Raise a 400 listing every problem of a hook call; return quietly when it is valid."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    problems: list[str] = []
    if not isinstance(body.get("hookInstance"), str) or not body.get("hookInstance"):
        problems.append("hookInstance is required")
    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        problems.append("hook is required")
    elif hook != expected_hook:
        problems.append(f"this service answers {expected_hook!r}, not {hook!r}")
    ctx = body.get("context")
    if not isinstance(ctx, dict):
        problems.append("context is required and must be an object")
        ctx = {}
    fhir_server = body.get("fhirServer")
    if fhir_server is not None and (not isinstance(fhir_server, str)
                                    or not fhir_server.startswith(("http://", "https://"))):
        problems.append("fhirServer must be an absolute http(s) URL")
    auth = body.get("fhirAuthorization")
    if auth is not None:
        if not fhir_server:
            problems.append("fhirAuthorization requires fhirServer")
        if not isinstance(auth, dict):
            problems.append("fhirAuthorization must be an object")
        else:
            for req in ("access_token", "token_type", "expires_in", "scope", "subject"):
                if auth.get(req) in (None, ""):
                    problems.append(f"fhirAuthorization.{req} is required")
            if auth.get("token_type") not in (None, "Bearer"):
                problems.append("fhirAuthorization.token_type must be Bearer")
    definition = HOOKS.get(expected_hook)
    if definition is not None:
        for f in definition.fields:
            value = ctx.get(f.name)
            p = f"context.{f.name}"
            if value is None:
                if f.required:
                    problems.append(f"{p} is required for {expected_hook}")
                continue
            if f.kind == "id" and (not isinstance(value, str) or not ID_RE.fullmatch(value)):
                problems.append(f"{p}: id value {value!r} is not valid (a bare FHIR id is required)")
            elif f.kind == "user" and (not isinstance(value, str) or not REF_RE.fullmatch(value)
                                       or value.split("/")[0] not in USER_TYPES):
                problems.append(f"{p} must be {{type}}/{{id}} with type in {USER_TYPES}")
            elif f.kind == "refs":
                if not isinstance(value, list) or not value:
                    problems.append(f"{p} must be a non-empty array")
                else:
                    for i, ref in enumerate(value):
                        if not isinstance(ref, str) or not REF_RE.fullmatch(ref):
                            problems.append(f"{p}[{i}] must be in the format {{type}}/{{id}}")
            elif f.kind == "bundle":
                problems.extend(_bundle_problems(value, p))
    prefetch = body.get("prefetch")
    if prefetch is not None:
        if not isinstance(prefetch, dict):
            problems.append("prefetch must be an object")
        else:
            for key, value in prefetch.items():
                if value is None:
                    continue  # null: the client found no data (differs from an absent key)
                deep = isinstance(value, dict) and value.get("resourceType") != "Bundle"
                if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                    for i, e in enumerate(value.get("entry") or []):
                        if isinstance(e, dict) and "resource" in e:
                            problems.extend(_resource_problems(
                                e["resource"], f"prefetch.{key}.entry[{i}].resource", deep=False))
                else:
                    problems.extend(_resource_problems(value, f"prefetch.{key}", deep=deep))
    ext = body.get("extension")
    if ext is not None and not isinstance(ext, dict):
        problems.append("extension must be an object")
    if problems:
        raise CdsError(400, f"invalid {expected_hook} request: {len(problems)} problem(s)", problems)
