"""v2 datatypes FHIR could not hold are refused by the converters (None; the mappers answer AE), not passed on."""

from __future__ import annotations

import pytest

from interfaces.mapping.datatypes import dtm, number


@pytest.mark.parametrize(("text", "expected"), [("95", 95), ("-0.5", -0.5), (".25", 0.25), ("1.5e3", 1500.0),
                                                ("123456789012345678", 123456789012345678)])
def test_numbers_fhir_can_hold(text, expected):
    assert number(text) == expected


@pytest.mark.parametrize("text", ["1e999999", "NaN", "inf", "0x10", "1" * 19, "9" * 400, "1.0000000000000000001", ""])
def test_numbers_fhir_cannot_hold_are_refused(text):
    assert number(text) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("2024", "2024"), ("202402", "2024-02"), ("20240229", "2024-02-29"), ("2024022913", "2024-02-29T13:00:00+00:00"),
    ("20240229 1330", "2024-02-29T13:30:00+00:00"), ("20241231235960.5-1200", "2024-12-31T23:59:60.5-12:00"),
    ("20240101000000+1400", "2024-01-01T00:00:00+14:00"),
])
def test_timestamps_keep_the_senders_precision(text, expected):
    assert dtm(text) == expected


@pytest.mark.parametrize("text", ["20241301", "20240230", "20230229", "19000229", "2024010124", "202401011260",
                                  "20240101120000+1500", "20240101120000-1460", "00000000", "0000", "1980-01-01",
                                  "2024010", "x"])
def test_what_is_no_timestamp_gives_none(text):
    assert dtm(text) is None


def test_an_instant_needs_a_time():
    assert dtm("20240102", instant=True) is None and dtm("202401", instant=True) is None
    assert dtm("2024010212", instant=True) == "2024-01-02T12:00:00+00:00"
