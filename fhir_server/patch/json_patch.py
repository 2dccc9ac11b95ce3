"""JSON Patch (RFC 6902) on FHIR JSON, via the ``jsonpatch`` library.

The patch document is checked on its own first, so that a malformed patch is a
400 whatever the resource; anything that then fails while applying it (a
``test`` that does not hold, a path that does not exist) is a 422, because the
patch is well-formed but cannot be applied to this resource (http.html#patch).
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import jsonpointer

from fhir_server.errors import Issue, OperationOutcomeError, bad_request, unprocessable

_OPS_NEEDING_VALUE = {"add", "replace", "test"}
_OPS_NEEDING_FROM = {"move", "copy"}
_OPS = _OPS_NEEDING_VALUE | _OPS_NEEDING_FROM | {"remove"}


def parse_json_patch(body: bytes | str | list[Any]) -> list[dict[str, Any]]:
    """Decode and structurally check a JSON Patch document; 400 when malformed."""
    if isinstance(body, bytes | str):
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"Malformed JSON Patch document: {exc}", code="structure") from exc
    else:
        doc = body
    if not isinstance(doc, list):
        raise bad_request("A JSON Patch document must be a JSON array of operations", code="structure")
    for i, op in enumerate(doc):
        _check_operation(i, op)
    return doc


def _check_operation(i: int, op: Any) -> None:
    where = f"JSON Patch operation {i}"
    if not isinstance(op, dict):
        raise bad_request(f"{where} is not a JSON object", code="structure")
    name = op.get("op")
    if name not in _OPS:
        raise bad_request(f"{where}: unknown or missing 'op' {name!r} (expected one of {sorted(_OPS)})",
                          code="structure")
    for member in ("path", *(("from",) if name in _OPS_NEEDING_FROM else ())):
        pointer = op.get(member)
        if not isinstance(pointer, str):
            raise bad_request(f"{where} ({name}) needs a string '{member}' member", code="structure")
        try:
            jsonpointer.JsonPointer(pointer)
        except jsonpointer.JsonPointerException as exc:
            raise bad_request(f"{where}: '{member}' is not a JSON Pointer: {exc}", code="structure") from exc
    if name in _OPS_NEEDING_VALUE and "value" not in op:
        raise bad_request(f"{where} ({name}) needs a 'value' member", code="structure")


def apply_json_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> Any:
    """Apply already-checked operations to a copy of ``document``; 422 when they cannot apply."""
    try:
        patch = jsonpatch.JsonPatch(operations)
        return patch.apply(document, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise OperationOutcomeError(
            422, [Issue("error", "processing", f"JSON Patch test operation failed: {exc}")]) from exc
    except jsonpatch.InvalidJsonPatch as exc:  # pragma: no cover - parse_json_patch catches these first
        raise bad_request(f"Invalid JSON Patch: {exc}", code="structure") from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise unprocessable(f"JSON Patch cannot be applied: {exc}") from exc
    except (TypeError, KeyError, IndexError, ValueError, RecursionError) as exc:
        # jsonpatch assumes containers where a pointer walks through a scalar.
        raise unprocessable(f"JSON Patch cannot be applied: {type(exc).__name__}: {exc}") from exc
