"""problem-list-gaps: affirmed conditions in notes missing from the problem list (NLP package)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest

from cds_hooks.cards import check_response
from tests.unit.cds_hooks.cds_testutil import hook_request, iso

pytest.importorskip("nlp.pipeline", reason="the NLP package is not installed")
URL = "/cds-services/problem-list-gaps"
NOTE = ("Assessment and plan: 71 year old man with hypertension and Alzheimer's disease, now with new "
        "atrial fibrillation. No evidence of pneumonia. Mother had breast cancer.")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def note(nid: str, pid: str, text: str, age: timedelta = timedelta(days=2)) -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": nid, "status": "current",
            "subject": {"reference": f"Patient/{pid}"}, "date": iso(-age),
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": b64(text)}}]}


def call(cds: Any, pid: str) -> list[dict[str, Any]]:
    r = cds.post(URL, hook_request("patient-view", pid) | {"fhirServer": "http://localhost/fhir"})
    assert r.status_code == 200, r.get_json()
    assert check_response(r.get_json()) == []
    return r.get_json()["cards"]


def test_only_affirmed_uncovered_conditions_become_suggestions(cds: Any) -> None:
    pid = cds.mem.load_synthea("Adalberto")  # problem list has Hypertension, Alzheimer's disease
    cds.mem.put(note("n1", pid, NOTE))
    [card] = call(cds, pid)
    assert card["indicator"] == "info" and card["selectionBehavior"] == "any"
    assert [s["label"] for s in card["suggestions"]] == ["Add provisional: Atrial fibrillation"]
    condition, provenance = (a["resource"] for a in card["suggestions"][0]["actions"])
    assert condition["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert {"system": "http://snomed.info/sct", "code": "49436004", "display": "Atrial fibrillation"} in \
        condition["code"]["coding"]
    assert condition["evidence"][0]["detail"] == [{"reference": "DocumentReference/n1"}]
    assert provenance["target"] == [{"reference": f"Condition/{condition['id']}"}]
    span = {e["url"]: e["valueInteger"] for e in provenance["entity"][0]["extension"][0]["extension"]}
    assert NOTE[span["start"]:span["end"]] == "atrial fibrillation"
    assert provenance["entity"][0]["what"]["reference"] == "DocumentReference/n1"
    # named like $extract's output: the pipeline (medSpaCy version) and the rule set's name and version
    from nlp.ruleset import default_ruleset

    rs = default_ruleset()
    assert provenance["policy"] == [f"urn:digitalfront:nlp:ruleset:{rs.name}@{rs.version}"]
    who = provenance["agent"][0]["who"]["display"]
    assert "medspacy" in who.lower() and rs.label in who


def test_diagnostic_report_text_counts_and_old_or_covered_notes_do_not(cds: Any) -> None:
    cds.mem.put({"resourceType": "Patient", "id": "p9"})
    cds.mem.put(note("old", "p9", "Patient has atrial fibrillation.", age=timedelta(days=800)))
    assert call(cds, "p9") == []
    cds.mem.put({"resourceType": "DiagnosticReport", "id": "r1", "status": "final", "code": {"text": "Echo"},
                 "subject": {"reference": "Patient/p9"}, "issued": iso(-timedelta(days=1)),
                 "presentedForm": [{"contentType": "text/plain", "data": b64("Impression: heart failure.")}]})
    [card] = call(cds, "p9")
    assert [s["label"] for s in card["suggestions"]] == ["Add provisional: Chronic congestive heart failure"]
    cds.mem.put({"resourceType": "Condition", "id": "hf", "subject": {"reference": "Patient/p9"},
                 "code": {"text": "Congestive heart failure"}})
    assert call(cds, "p9") == []
