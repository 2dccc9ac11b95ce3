"""The ``parameter`` list of an operation's Parameters body, checked for shape before anyone reads it.

Operations read their inputs with ``p.get("name")`` and ``p["valueX"]``; a body whose ``parameter`` is a
string, or whose entries are not objects, made those reads fail with a 500. One check here gives every
operation the same 400.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import bad_request


def parameters_of(body: Any, operation: str) -> list[dict[str, Any]]:
    """``body.parameter``, each an object with a string ``name``; 400 otherwise."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request(f"{operation} takes a Parameters resource", code="structure")
    params = body.get("parameter", [])
    if not isinstance(params, list):
        raise bad_request("Parameters.parameter must be an array", code="structure")
    for n, p in enumerate(params):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise bad_request(f"Parameters.parameter[{n}] must be an object with a name", code="structure",
                              expression=[f"Parameters.parameter[{n}]"])
    return params


def complex_value(param: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """``param["value" + kind]`` for a complex type (Reference, Attachment, ...): None when absent, 400 when
    it is not a JSON object."""
    value = param.get(f"value{kind}")
    if value is not None and not isinstance(value, dict):
        raise bad_request(f"Parameter {param['name']!r}: value{kind} must be a JSON object", code="structure")
    return value
