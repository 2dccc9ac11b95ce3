"""Test helpers shared by unit and integration tests: IG sample messages and a recording FHIR writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from interfaces.tools.ig_samples import read_ig_messages

REPO = Path(__file__).resolve().parents[3]
IG = REPO.parent / "shared" / "corpora" / "v2-to-fhir"


def ingest_ok(services: Any, raw: bytes) -> list[str]:
    """Ingest one message through ``services``' pipeline, asserting AA (with the store's outcome if not);
    the resources it wrote."""
    from interfaces.service import pipeline_for

    p = pipeline_for(services)
    r = p.ingest(raw, "test")
    assert (r.ack_code, r.status) == ("AA", "processed"), p.store.get(r.message_id).outcome
    return r.resources


def ig_messages() -> dict[str, str]:
    """Structure name -> message text, from the IG's test_conversions.md (one sample per structure)."""
    path = IG / "samples" / "test_conversions.md"
    if not path.exists():
        pytest.skip(f"IG samples not found at {path}")
    return read_ig_messages(path)


class RecordingWriter:
    """Stands in for the FHIR router until it is wired: records bundles and answers like a transaction."""

    def __init__(self) -> None:
        self.bundles: list[dict[str, Any]] = []
        self.fail_with: Exception | None = None
        self.on_call: Any = None
        self._n = 0

    def __call__(self, bundle: dict[str, Any]) -> dict[str, Any]:
        if self.on_call is not None:
            self.on_call(bundle)
        if self.fail_with is not None:
            raise self.fail_with
        self.bundles.append(bundle)
        entries = []
        for e in bundle["entry"]:
            self._n += 1
            rtype = e["resource"]["resourceType"] if e["request"]["method"] != "PATCH" else "Patient"
            entries.append({"response": {"status": "201 Created", "location": f"{rtype}/{self._n}/_history/1"}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
