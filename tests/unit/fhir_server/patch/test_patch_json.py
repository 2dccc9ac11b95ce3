"""JSON Patch through ``apply_patch``: malformed documents are 400, unappliable ones 422."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.patch import apply_patch

JSON_PATCH = "application/json-patch+json"

PATIENT: dict[str, Any] = {"resourceType": "Patient", "id": "p1", "active": True,
                           "name": [{"family": "Chalmers", "given": ["Peter"]}]}


def run(body: Any) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return apply_patch(PATIENT, JSON_PATCH, raw)


def status(body: Any) -> int:
    before = copy.deepcopy(PATIENT)
    with pytest.raises(OperationOutcomeError) as info:
        run(body)
    assert PATIENT == before
    assert info.value.outcome()["issue"][0]["severity"] == "error"
    return info.value.status


def test_typical_edit() -> None:
    out = run([{"op": "test", "path": "/active", "value": True},
               {"op": "replace", "path": "/active", "value": False},
               {"op": "add", "path": "/name/0/given/-", "value": "James"},
               {"op": "copy", "from": "/name/0/family", "path": "/name/0/text"}])
    assert out["active"] is False and out["name"][0]["given"] == ["Peter", "James"]
    assert out["name"][0]["text"] == "Chalmers"
    assert PATIENT["active"] is True


@pytest.mark.parametrize("body", [
    b"", b"{not json", b"\xff\xfe", {"op": "add"}, [1], [{"path": "/a"}], [{"op": "jump", "path": "/a"}],
    [{"op": "add", "path": "active", "value": 1}], [{"op": "add", "path": "/a"}],
    [{"op": "move", "path": "/a"}], [{"op": "remove", "path": 5}], [{"op": "copy", "from": "x", "path": "/a"}],
])
def test_malformed_is_400(body: Any) -> None:
    assert status(body) == 400


@pytest.mark.parametrize("body", [
    [{"op": "test", "path": "/active", "value": False}],
    [{"op": "test", "path": "/active", "value": 1}],  # a boolean is not the number 1
    [{"op": "remove", "path": "/birthDate"}],
    [{"op": "add", "path": "/contact/0/name", "value": {}}],
    [{"op": "replace", "path": "/name/5", "value": {}}],
    [{"op": "add", "path": "/active/x", "value": 1}],
    [{"op": "replace", "path": "/id", "value": "p2"}],
    [{"op": "remove", "path": "/resourceType"}],
    [{"op": "replace", "path": "", "value": [1, 2]}],
    [{"op": "move", "from": "/name", "path": "/name/0"}],
])
def test_unappliable_is_422(body: Any) -> None:
    assert status(body) == 422


def test_whole_document_replace_keeping_identity_is_allowed() -> None:
    out = run([{"op": "replace", "path": "", "value": {"resourceType": "Patient", "id": "p1"}}])
    assert out == {"resourceType": "Patient", "id": "p1"}
