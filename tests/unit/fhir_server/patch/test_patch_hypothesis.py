"""Generated patches never raise anything but OperationOutcomeError, and never touch the input.

The resources are real R4 examples from the official package (read from ../shared);
the patches mix paths that exist in them with arbitrary text and values.
"""

from __future__ import annotations

import copy
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.errors import OperationOutcomeError
from fhir_server.patch import apply_patch

PACKAGE = Path(__file__).resolve().parents[4] / ".." / "shared" / "fhir-packages" / "hl7.fhir.r4.examples-4.0.1.tgz"
EXAMPLES = ("Patient-example.json", "Observation-blood-pressure.json", "Questionnaire-3141.json",
            "MedicationRequest-medrx0301.json")


def _load_examples() -> list[dict[str, Any]]:
    if not PACKAGE.is_file():
        return []
    out = []
    with tarfile.open(PACKAGE) as tar:
        for name in EXAMPLES:
            f = tar.extractfile(f"package/{name}")
            assert f is not None
            out.append(json.load(f))
    return out


RESOURCES = _load_examples()
pytestmark = pytest.mark.skipif(not RESOURCES, reason=f"FHIR examples package not found at {PACKAGE}")


def _paths(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(FHIRPath, JSON Pointer) pairs of the elements of ``resource``."""
    out: list[tuple[str, str]] = [(resource["resourceType"], "")]

    def walk(value: Any, fp: str, ptr: str, depth: int) -> None:
        if depth > 4 or not isinstance(value, dict):
            return
        for k, v in value.items():
            if k.startswith("_") or k == "resourceType":
                continue
            if isinstance(v, list):
                out.append((f"{fp}.{k}", f"{ptr}/{k}"))
                for i, item in enumerate(v[:3]):
                    out.append((f"{fp}.{k}[{i}]", f"{ptr}/{k}/{i}"))
                    walk(item, f"{fp}.{k}[{i}]", f"{ptr}/{k}/{i}", depth + 1)
            else:
                out.append((f"{fp}.{k}", f"{ptr}/{k}"))
                walk(v, f"{fp}.{k}", f"{ptr}/{k}", depth + 1)

    walk(resource, resource["resourceType"], "", 0)
    return out


PATHS = {r["resourceType"]: _paths(r) for r in RESOURCES}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
type_suffixes = st.sampled_from(["String", "Code", "Boolean", "Integer", "Decimal", "Date", "DateTime",
                                 "CodeableConcept", "Coding", "Identifier", "HumanName", "Quantity",
                                 "Reference", "Period", "Extension", "Nonsense", "Markdown"])


good_values = st.one_of(
    st.builds(lambda t: ("valueString", t), st.text(max_size=6)),
    st.builds(lambda t: ("valueCode", t), st.sampled_from(["male", "final", "official", "x"])),
    st.builds(lambda b: ("valueBoolean", b), st.booleans()),
    st.builds(lambda i: ("valueInteger", i), st.integers(-3, 3)),
    st.just(("valueDate", "2020-01-01")),
    st.just(("valueDateTime", "2020-01-01T10:00:00Z")),
    st.builds(lambda t: ("valueCodeableConcept", {"text": t}), st.text(min_size=1, max_size=4)),
    st.just(("valueIdentifier", {"system": "urn:x", "value": "1"})),
    st.just(("valueHumanName", {"family": "Doe", "given": ["J"]})),
    st.just(("valuePeriod", {"start": "2001"})),
    st.just(("valueQuantity", {"value": 1, "unit": "mg"})),
    st.just(("valueExtension", {"url": "urn:e", "valueString": "v"})),
    st.tuples(type_suffixes.map(lambda t: "value" + t), json_values),
)


@st.composite
def operation(draw: Any, resource: dict[str, Any]) -> dict[str, Any]:
    known = [p for p, _ in PATHS[resource["resourceType"]]]
    path = draw(st.sampled_from(known) | st.text(max_size=20)
                | st.sampled_from(known).map(lambda p: p + ".where(id.exists())")
                | st.sampled_from(known).map(lambda p: p + ".first()")
                | st.sampled_from(known).map(lambda p: p + ".extension"))
    valid = draw(st.integers(0, 19)) > 0
    op_type = draw(st.sampled_from(["add", "insert", "delete", "replace", "move"] if valid else ["copy", ""]))
    parts: list[Any] = [{"name": "type", "valueCode": op_type}, {"name": "path", "valueString": path}]
    likely = st.integers(0, 9).map(lambda n: n > 0)
    if draw(likely if op_type == "add" else st.booleans().filter(lambda b: not b) | st.just(True)):
        names = [p.rsplit(".", 1)[-1].split("[")[0] for p in known] + ["given", "value", "extension"]
        parts.append({"name": "name", "valueString": draw(st.sampled_from(names) | st.text(max_size=6))})
    for int_part, needed in (("index", op_type == "insert"), ("source", op_type == "move"),
                             ("destination", op_type == "move")):
        if draw(likely if needed else st.integers(0, 9).map(lambda n: n == 0)):
            parts.append({"name": int_part, "valueInteger": draw(st.integers(-1, 4))})
    if draw(likely if op_type in ("add", "insert", "replace") else st.integers(0, 9).map(lambda n: n == 0)):
        if draw(st.integers(0, 4)):
            key, value = draw(good_values)
            parts.append({"name": "value", key: value})
        else:
            sub = draw(st.lists(st.fixed_dictionaries(
                {"name": st.sampled_from(["text", "value", "system", "use", "given", "gender", "x"]),
                 "valueString": st.text(max_size=5)}), max_size=3))
            parts.append({"name": "value", "part": sub})
    return {"name": "operation", "part": draw(st.permutations(parts))}


@st.composite
def resource_and_fhirpath(draw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    resource = draw(st.sampled_from(RESOURCES))
    ops = draw(st.lists(operation(resource), min_size=1, max_size=3))
    params: Any = {"resourceType": "Parameters", "parameter": ops}
    if draw(st.integers(0, 49)) == 0:
        params = draw(json_values)  # a body that is not even a Parameters
    return resource, params


@st.composite
def resource_and_json_patch(draw: Any) -> tuple[dict[str, Any], Any]:
    resource = draw(st.sampled_from(RESOURCES))
    pointers = [p for _, p in PATHS[resource["resourceType"]]]
    ops = []
    for _ in range(draw(st.integers(0, 3))):
        op: dict[str, Any] = {"op": draw(st.sampled_from(["add", "remove", "replace", "move", "copy", "test",
                                                          "x"]))}
        op["path"] = draw(st.sampled_from(pointers) | st.text(max_size=10)
                          | st.sampled_from(pointers).map(lambda p: p + "/-"))
        if draw(st.booleans()):
            op["from"] = draw(st.sampled_from(pointers) | st.text(max_size=5))
        if draw(st.booleans()):
            op["value"] = draw(json_values)
        ops.append(op)
    body: Any = ops if draw(st.integers(0, 9)) else draw(json_values)
    return resource, body


def _check(resource: dict[str, Any], content_type: str, body: Any) -> None:
    before = copy.deepcopy(resource)
    try:
        result = apply_patch(resource, content_type, body)
    except OperationOutcomeError as exc:
        assert 400 <= exc.status < 500, exc
        assert exc.outcome()["issue"]
    else:
        assert result["resourceType"] == resource["resourceType"]
        assert result.get("id") == resource.get("id")
    assert resource == before, "apply_patch must not modify its input"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resource_and_fhirpath())
def test_generated_fhirpath_patches(case: tuple[dict[str, Any], Any]) -> None:
    resource, params = case
    _check(resource, "application/fhir+json", params)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resource_and_json_patch())
def test_generated_json_patches(case: tuple[dict[str, Any], Any]) -> None:
    resource, body = case
    raw = json.dumps(body).encode() if not isinstance(body, dict) else body
    _check(resource, "application/json-patch+json", raw)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["application/json-patch+json", "application/fhir+json",
                                                 "application/fhir+xml", "text/plain", ""]))
def test_random_bytes(body: bytes, content_type: str) -> None:
    _check(RESOURCES[0], content_type, body)
