"""Agreement with the reference (Java) validator on the 100 R4 cases of fhir-test-cases."""

import json
from pathlib import Path

import pytest

from fhir_server.errors import OperationOutcomeError
from fhir_server.formats import parse_body
from fhir_server.validation import has_errors, validate_resource

CASES = Path(__file__).resolve().parents[4].parent / "shared" / "corpora" / "fhir-test-cases" / "validator"
BAR = 85


def _verdict(path: Path) -> bool:
    """has-errors as $validate reports it: strict, the body parsed as the server parses it."""
    try:
        resource = parse_body(path.read_bytes(), "application/fhir+json")
    except OperationOutcomeError:
        return True
    return has_errors(validate_resource(resource, strict=True))


def test_agreement_with_reference_validator():
    manifest = CASES / "manifest.json"
    if not manifest.exists():
        pytest.skip(f"{manifest} not available")
    cases = json.loads(manifest.read_text())["cases"]
    agree, disagree = 0, []
    for case in cases:
        expected = case["expected_errors"] > 0
        got = _verdict(CASES / case["file"])
        if got == expected:
            agree += 1
        else:
            disagree.append(f"{case['name']} (expected {'errors' if expected else 'none'})")
    print(f"\nvalidator agreement: {agree}/{len(cases)} (bar {BAR}); disagreements: {', '.join(disagree)}")
    assert len(cases) == 100
    assert agree >= BAR, disagree
