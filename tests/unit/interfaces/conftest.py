"""Fixtures of the HL7v2 tests (helpers live in hl7_testkit, shared with integration tests)."""

from __future__ import annotations

import pytest

from tests.unit.interfaces.hl7_testkit import RecordingWriter, ig_messages


@pytest.fixture(scope="session")
def samples() -> dict[str, str]:
    return ig_messages()


@pytest.fixture
def writer() -> RecordingWriter:
    return RecordingWriter()
