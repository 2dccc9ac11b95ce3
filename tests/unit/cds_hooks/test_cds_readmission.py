"""readmission-risk: LACE arithmetic, the ML model through the inference layer, and LACE-only fallback."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cds_hooks.cards import check_response
from cds_hooks.services import readmission_risk
from tests.unit.cds_hooks.cds_testutil import hook_request, iso

URL = "/cds-services/readmission-risk"


def enc(eid: str, cls: str, start: timedelta, end: timedelta | None, pid: str = "p1") -> dict[str, Any]:
    period = {"start": iso(-start)} | ({"end": iso(-end)} if end is not None else {})
    return {"resourceType": "Encounter", "id": eid, "status": "finished" if end is not None else "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
            "subject": {"reference": f"Patient/{pid}"}, "period": period}


def cond(cid: str, display: str, pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {"coding": [{"code": "active"}]}, "onsetDateTime": "2015-01-01",
            "code": {"text": display}}


def high_risk_chart(cds: Any) -> None:
    m = cds.mem
    m.put({"resourceType": "Patient", "id": "p1", "birthDate": "1941-03-02", "gender": "female"})
    m.put(enc("stay", "IMP", timedelta(days=5, hours=2), None))
    m.put(enc("ed-admit", "EMER", timedelta(days=5, hours=6), timedelta(days=5, hours=3)))
    m.put(enc("ed-1", "EMER", timedelta(days=40), timedelta(days=40) - timedelta(hours=4)))
    m.put(enc("ed-2", "EMER", timedelta(days=120), timedelta(days=120) - timedelta(hours=4)))
    m.put(enc("ed-old", "EMER", timedelta(days=400), timedelta(days=400) - timedelta(hours=4)))
    for cid, text in (("c1", "Chronic congestive heart failure"), ("c2", "Chronic kidney disease stage 3"),
                      ("c3", "Diabetes mellitus type 2")):
        m.put(cond(cid, text))
    m.put(cond("c4", "Acute viral pharyngitis") | {"clinicalStatus": {"coding": [{"code": "resolved"}]}})


def call(cds: Any, pid: str = "p1") -> list[dict[str, Any]]:
    r = cds.post(URL, hook_request("patient-view", pid) | {"fhirServer": "http://localhost/fhir"})
    assert r.status_code == 200, r.get_json()
    assert check_response(r.get_json()) == []
    return r.get_json()["cards"]


def test_high_risk_card_with_lace_breakdown_and_model(cds: Any) -> None:
    if readmission_risk.model_client(cds.core.settings) is None:
        pytest.skip("inference package or readmission_risk model not installed")
    high_risk_chart(cds)
    [card] = call(cds)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Readmission risk high: LACE 14, model ")
    for part in ("L 4: length of stay 5.1 d", "A 3: emergent admission",
                 "C 5: Charlson 4 (diabetes, heart failure, renal disease)", "E 2: 2 ED visit(s) in 6 months"):
        assert part in card["detail"]
    # the factors are the model's own features that raised this probability, with their contribution
    import re

    from inference.features import FEATURE_NAMES

    factors = re.findall(r"(\w+) \(\+(\d+)%\)", card["detail"].split("Top contributing factors:")[1])
    assert factors and all(name in FEATURE_NAMES and int(pct) >= 1 for name, pct in factors)
    assert "ed_visits_6m" in dict(factors)  # two ED visits in six months is in this chart
    ra = card["suggestions"][0]["actions"][0]["resource"]
    assert ra["resourceType"] == "RiskAssessment" and ra["encounter"] == {"reference": "Encounter/stay"}
    assert ra["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"
    assert 0.0 <= ra["prediction"][0]["probabilityDecimal"] <= 1.0
    assert f"model {ra['prediction'][0]['probabilityDecimal']:.0%}" in card["summary"]
    # the model and the version that computed the probability travel with it, as its performer (a Device)
    from inference.registry import registry

    info = registry().get("readmission_risk")
    version = str(info.resolve_version(None))
    [device] = ra["contained"]
    assert ra["performer"]["reference"] == f"#{device['id']}"
    assert device["resourceType"] == "Device" and device["version"] == [{"value": version}]
    assert device["identifier"][0]["value"] == f"readmission_risk:{version}"
    assert ("note" in device) == bool(info.card.get("demo_model"))  # labelled a demo model when it is one
    assert f"readmission_risk version {version}" in card["detail"] and version in ra["method"]["text"]
    from fhir_server.validation import has_errors, validate_resource

    issues = validate_resource({k: v for k, v in ra.items() if k != "id"})  # what the EHR would create
    assert not has_errors(issues), [i.diagnostics for i in issues]


def test_lace_card_works_without_the_model(cds: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readmission_risk, "model_client", lambda settings: None)
    high_risk_chart(cds)
    [card] = call(cds)
    assert card["summary"] == "Readmission risk high: LACE 14"
    assert "ML model not available: LACE only." in card["detail"]
    assert "probabilityDecimal" not in card["suggestions"][0]["actions"][0]["resource"]["prediction"][0]


def test_low_risk_or_no_recent_stay_gets_no_card(cds: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readmission_risk, "model_client", lambda settings: None)
    cds.mem.put({"resourceType": "Patient", "id": "p1", "birthDate": "1990-01-01"})
    cds.mem.put(enc("short", "IMP", timedelta(days=3), timedelta(days=2)))  # LACE 1
    assert call(cds) == []
    pid = cds.mem.load_synthea("Harland_DuBuque")  # 35 inpatient stays, all years ago
    assert call(cds, pid) == []
    cds.mem.put(enc("now", "IMP", timedelta(days=8), None, pid=pid))
    [card] = call(cds, pid)
    assert "LACE" in card["summary"] and "L 5: length of stay 8.0 d" in card["detail"]
