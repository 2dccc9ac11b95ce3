"""sepsis-early-warning: qSOFA/NEWS2 arithmetic, cards that fire and cards that must not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cds_hooks.cards import check_response
from cds_hooks.services.sepsis_early_warning import Reading, news2, qsofa
from tests.unit.cds_hooks.cds_testutil import hook_request, iso

URL = "/cds-services/sepsis-early-warning"


def obs(code: str, value: float | None, unit: str, ago_min: int = 30, status: str = "final",
        components: list[tuple[str, float, str]] | None = None, pid: str = "p1") -> dict[str, Any]:
    o: dict[str, Any] = {"resourceType": "Observation", "id": f"{code}-{ago_min}-{value}", "status": status,
                         "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                         "subject": {"reference": f"Patient/{pid}"},
                         "effectiveDateTime": iso(-timedelta(minutes=ago_min))}
    if value is not None:
        o["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    if components:
        o["component"] = [{"code": {"coding": [{"system": "http://loinc.org", "code": c}]},
                           "valueQuantity": {"value": v, "unit": u, "code": u}} for c, v, u in components]
    return o


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}


def septic() -> list[dict[str, Any]]:
    return [obs("9279-1", 26, "/min"), obs("85354-9", None, "", components=[("8480-6", 88, "mm[Hg]"),
                                                                          ("8462-4", 50, "mm[Hg]")]),
            obs("8867-4", 124, "/min"), obs("8310-5", 101.3, "[degF]"), obs("59408-5", 91, "%"),
            obs("9269-2", 13, "{score}"), obs("2524-7", 4.6, "mmol/L", ago_min=20)]


def test_scores_follow_the_published_tables() -> None:
    from datetime import UTC, datetime
    now = datetime.now(UTC)
    r = {"rr": Reading(26.0, "/min", now), "sbp": Reading(88.0, "mm[Hg]", now), "hr": Reading(124.0, "", now),
         "temp": Reading(38.5, "Cel", now), "spo2": Reading(91.0, "%", now), "gcs": Reading(13.0, "", now)}
    assert news2(r) == {"rr": 3, "spo2": 3, "sbp": 3, "hr": 2, "temp": 1, "consciousness": 3}
    assert qsofa(r) == {"rr": 1, "sbp": 1, "mentation": 1}
    normal = {"rr": Reading(16.0, "", now), "sbp": Reading(125.0, "", now), "hr": Reading(72.0, "", now),
              "temp": Reading(36.8, "", now), "spo2": Reading(98.0, "", now), "gcs": Reading(15.0, "", now)}
    assert sum(news2(normal).values()) == 0 and sum(qsofa(normal).values()) == 0
    edge = {"rr": Reading(21.0, "", now), "sbp": Reading(101.0, "", now), "hr": Reading(91.0, "", now),
            "temp": Reading(39.1, "", now), "spo2": Reading(94.0, "", now), "o2": Reading(2.0, "L/min", now)}
    assert news2(edge) == {"rr": 2, "sbp": 1, "hr": 1, "temp": 2, "spo2": 1, "o2": 2}
    assert qsofa(edge) == {"rr": 0, "sbp": 0}


def test_septic_patient_gets_a_critical_card_with_breakdown_and_orders(cds: Any) -> None:
    req = hook_request("patient-view", "p1") | {"prefetch": {"patient": PATIENT, "observations": bundle(*septic())}}
    r = cds.post(URL, req)
    assert r.status_code == 200
    body = r.get_json()
    assert check_response(body) == []
    [card] = body["cards"]
    assert card["indicator"] == "critical"
    assert "NEWS2 15" in card["summary"] and "qSOFA 3" in card["summary"] and "lactate 4.6" in card["summary"]
    assert "| Temperature | 38.5 Cel | 1 |" in card["detail"]  # °F converted
    assert "| Systolic BP | 88.0 mm[Hg] | 3 | 1 |" in card["detail"]  # from the BP panel component
    actions = card["suggestions"][0]["actions"]
    assert [a["resource"]["code"]["coding"][0]["code"] for a in actions] == ["600-7"]  # lactate is recent
    assert actions[0]["resource"]["subject"] == {"reference": "Patient/p1"}
    assert card["links"][0]["type"] == "absolute" and card["links"][0]["url"].endswith("/fhir/Patient/p1")


def test_acvpu_consciousness_and_each_readings_timestamp(cds: Any) -> None:
    """Consciousness from ACVPU (LOINC 67775-7, "voice") instead of GCS, and every row of the breakdown
    carries the time of the reading it used (so a stale value is visible)."""
    from datetime import datetime

    voice = obs("67775-7", None, "", ago_min=45)
    voice["valueCodeableConcept"] = {"coding": [{"system": "http://snomed.info/sct", "code": "300202002",
                                                 "display": "Responds to voice"}]}
    readings = [o for o in septic() if o["code"]["coding"][0]["code"] != "9269-2"] + [voice]
    req = hook_request("patient-view", "p1") | {"prefetch": {"patient": PATIENT, "observations": bundle(*readings)}}
    [card] = cds.post(URL, req).get_json()["cards"]
    rows = {line.split("|")[1].strip(): line for line in card["detail"].splitlines() if line.startswith("| ")}
    assert "ACVPU" in rows and "GCS" not in rows
    assert "| 3 |" in rows["ACVPU"]  # new confusion / voice scores 3 in NEWS2
    for o in readings:
        at = datetime.fromisoformat(o["effectiveDateTime"]).isoformat(timespec="minutes")
        assert any(at in line for line in rows.values()), (o["code"], at)


def test_with_a_clinician_smart_app_configured_cards_link_to_it(make_cds: Any) -> None:
    """``cds_smart_launch_url`` set: the link is a SMART launch of that app with the patient as appContext
    (the card rules accept it), instead of the absolute link to the patient's page."""
    cds = make_cds(cds_smart_launch_url="https://apps.example/clinician/launch")
    req = hook_request("patient-view", "p1") | {"prefetch": {"patient": PATIENT, "observations": bundle(*septic())}}
    body = cds.post(URL, req).get_json()
    assert check_response(body) == []
    [card] = body["cards"]
    assert card["links"] == [{"label": "Review vitals in DigitalFront", "type": "smart",
                              "url": "https://apps.example/clinician/launch", "appContext": "patient=p1"}]


def test_warning_on_single_red_parameter_and_lactate_order_when_missing(cds: Any) -> None:
    obs_ = [obs("9279-1", 18, "/min"), obs("8867-4", 80, "/min"), obs("59408-5", 90, "%")]
    req = hook_request("patient-view", "p1") | {"prefetch": {"patient": PATIENT, "observations": bundle(*obs_)}}
    [card] = cds.post(URL, req).get_json()["cards"]
    assert card["indicator"] == "warning"
    codes = [a["resource"]["code"]["coding"][0]["code"] for a in card["suggestions"][0]["actions"]]
    assert codes == ["2524-7", "600-7"]


def test_no_card_for_normal_stale_or_unusable_values(cds: Any) -> None:
    normal = [obs("9279-1", 16, "/min"), obs("8867-4", 70, "/min"), obs("59408-5", 98, "%"),
              obs("9269-2", 15, "{score}")]
    stale = [o | {"effectiveDateTime": iso(-timedelta(days=3))} for o in septic()]
    cancelled = [o | {"status": "entered-in-error"} for o in septic()]
    for case in (normal, stale, cancelled, []):
        req = hook_request("patient-view", "p1") | {"prefetch": {"patient": PATIENT, "observations": bundle(*case)}}
        assert cds.post(URL, req).get_json() == {"cards": []}


def test_synthea_patient_fetched_from_the_repository_gets_no_card(cds: Any) -> None:
    pid = cds.mem.load_synthea("Adalberto")
    req = hook_request("patient-view", pid) | {"fhirServer": "http://localhost/fhir"}
    r = cds.post(URL, req)
    assert r.status_code == 200 and r.get_json() == {"cards": []}  # its vitals are years old
    assert any(s.startswith("Observation?patient=") for s in cds.mem.searches)
    for o in septic():  # the same chart with fresh deteriorating vitals fires
        cds.mem.put(o | {"subject": {"reference": f"Patient/{pid}"}})
    assert cds.post(URL, req).get_json()["cards"][0]["indicator"] == "critical"
