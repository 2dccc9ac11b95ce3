"""The official patch test cases (fhir-test-cases/patch) through ``apply_patch``.

Each test prints how many cases pass and asserts the bar we reach: all of them
(no exclusions, see docs/patch.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.patch import apply_json_patch, apply_patch, parse_json_patch

CORPUS = Path(__file__).resolve().parents[4] / ".." / "shared" / "corpora" / "fhir-test-cases" / "patch"
FHIR_CASES = CORPUS / "fhir-patch-tests.xml"
JSON_CASES = CORPUS / "json-patch-tests.json"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"patch corpus not found at {CORPUS}")

FHIRPATH_BAR = 33  # every case of fhir-patch-tests.xml
JSON_BAR = 16  # every case of json-patch-tests.json


def _run_fhirpath_case(case: Any) -> tuple[bool, str]:
    from tests.unit.fhir_server.patch import fhir_patch_xml as fx

    name = case.get("name")
    resource = fx.parse_fragment(case.find("input"))
    params = fx.parse_fragment(case.find("diff"))
    error = case.find("error")
    before = json.dumps(resource, sort_keys=True)
    try:
        result = apply_patch(resource, "application/fhir+json", params)
    except OperationOutcomeError as exc:
        if error is None:
            return False, f"{name}: unexpected error {exc.status} {exc}"
        if exc.status != 422:
            return False, f"{name}: expected 422 for a patch that cannot apply, got {exc.status}"
        return True, f"{name}: error as expected ({exc})"
    if json.dumps(resource, sort_keys=True) != before:
        return False, f"{name}: the input resource was modified in place"
    if error is not None:
        return False, f"{name}: expected error {error.get('msg')!r}, got {result}"
    expected = fx.parse_fragment(case.find("output"))
    if fx.normalize(result) != fx.normalize(expected):
        return False, f"{name}: got {json.dumps(result)[:400]} expected {json.dumps(expected)[:400]}"
    return True, name


def test_fhirpath_patch_corpus() -> None:
    from tests.unit.fhir_server.patch import fhir_patch_xml as fx

    cases = fx.load_cases(str(FHIR_CASES))
    outcomes = [_run_fhirpath_case(c) for c in cases]
    passed = sum(ok for ok, _ in outcomes)
    print(f"\nFHIRPath Patch corpus: {passed}/{len(cases)} cases pass")
    failures = [msg for ok, msg in outcomes if not ok]
    assert len(cases) == 33
    assert passed >= FHIRPATH_BAR, "\n".join(failures)


def _run_json_case(case: dict[str, Any]) -> tuple[bool, str]:
    name = case.get("comment", "?")
    try:
        ops = parse_json_patch(json.dumps(case["patch"]).encode())
        result = apply_json_patch(case["doc"], ops)
    except OperationOutcomeError as exc:
        if "error" not in case:
            return False, f"{name}: unexpected error {exc.status} {exc}"
        return True, name
    if "error" in case:
        return False, f"{name}: expected error {case['error']!r}, got {result}"
    if result != case["expected"]:
        return False, f"{name}: got {result} expected {case['expected']}"
    return True, name


def test_json_patch_corpus() -> None:
    cases = json.loads(JSON_CASES.read_text())
    outcomes = [_run_json_case(c) for c in cases if not c.get("disabled")]
    passed = sum(ok for ok, _ in outcomes)
    print(f"\nJSON Patch corpus: {passed}/{len(cases)} cases pass")
    assert len(cases) == 16
    assert passed >= JSON_BAR, "\n".join(msg for ok, msg in outcomes if not ok)


def test_json_patch_corpus_through_apply_patch() -> None:
    """The same cases on a resource: the documents get a resourceType so ``apply_patch`` takes them."""
    cases = json.loads(JSON_CASES.read_text())
    passed = 0
    for case in cases:
        doc = {"resourceType": "Basic", **case["doc"]}
        body = json.dumps(case["patch"]).encode()
        try:
            result = apply_patch(doc, "application/json-patch+json; charset=utf-8", body)
        except OperationOutcomeError as exc:
            assert "error" in case, f"{case['comment']}: {exc}"
            assert exc.status == 422, f"{case['comment']}: a valid patch that cannot apply is 422"
            passed += 1
            continue
        assert "error" not in case, case["comment"]
        assert result == {"resourceType": "Basic", **case["expected"]}, case["comment"]
        passed += 1
    assert passed == len(cases)
