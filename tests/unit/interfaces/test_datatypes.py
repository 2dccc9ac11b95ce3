"""NM values the FHIR core could not store are refused by the mapper (AE), not passed on."""

from __future__ import annotations

import pytest

from interfaces.mapping.datatypes import number


@pytest.mark.parametrize(("text", "expected"), [("95", 95), ("-0.5", -0.5), (".25", 0.25), ("1.5e3", 1500.0),
                                                ("123456789012345678", 123456789012345678)])
def test_numbers_fhir_can_hold(text, expected):
    assert number(text) == expected


@pytest.mark.parametrize("text", ["1e999999", "NaN", "inf", "0x10", "1" * 19, "9" * 400, "1.0000000000000000001", ""])
def test_numbers_fhir_cannot_hold_are_refused(text):
    assert number(text) is None
