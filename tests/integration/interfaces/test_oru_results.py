"""ORU^R01 results through the real pipeline and storage, built from the IG's ORU_R01 sample.

The sample's three IgE results stay; appended to its order group: a blood-pressure panel whose systolic and
diastolic results are OBX sub-ids 4.1/4.2 (components of the panel's Observation), structured numerics (a
range, a ratio), a coded and a text result, and a Z-segment the mapping must step over.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.interfaces.hl7_testkit import ig_messages, ingest_ok

EXTRA = (
    "OBX|4|NM|85354-9^Blood pressure panel^LN|4||||||||F",
    "OBX|5|NM|8480-6^Systolic blood pressure^LN|4.1|120|mm[Hg]^mm[Hg]^UCUM|90-120|N|||F",
    "OBX|6|NM|8462-4^Diastolic blood pressure^LN|4.2|95|mm[Hg]^mm[Hg]^UCUM|60-80|H|||F",
    "ZLB|1|internal routing|bench 4",
    "OBX|7|SN|11557-6^Carbon dioxide [Partial pressure] in Blood^LN|7|^35^-^45|mm[Hg]^mm[Hg]^UCUM||||||F",
    "OBX|8|SN|5047-6^Rubella virus IgG Ab [Titer] in Serum^LN|8|^1^:^128|||||||F",
    "OBX|9|CWE|600-7^Bacteria identified in Blood by Culture^LN|9|3092008^Staphylococcus aureus^SCT||||||F",
    "OBX|10|ST|8251-1^Service comment^LN|10|Specimen slightly hemolyzed||||||F",
)


def ig_oru(control_id: str, version: str = "2.5.1") -> bytes:
    segments = [s.split("|") for s in ig_messages()["ORU_R01"].split("\r") if s]
    segments[0][9], segments[0][11] = control_id, version
    return ("\r".join("|".join(s) for s in segments) + "\r" + "".join(x + "\r" for x in EXTRA)).encode()


@pytest.fixture
def services(services_factory: Any) -> Any:
    return services_factory(hl7_workers=0)  # SQLite; the writer maps


def by_code(services: Any) -> dict[str, dict[str, Any]]:
    return {o["code"]["coding"][0]["code"]: o for o in services.client.search("Observation", {})}


def test_sub_ids_become_components_of_one_observation(services: Any) -> None:
    ingest_ok(services, ig_oru("c1"))
    obs = by_code(services)
    assert "8480-6" not in obs and "8462-4" not in obs  # not Observations of their own
    panel = obs["85354-9"]
    systolic, diastolic = panel["component"]
    assert systolic["code"]["coding"][0] == {"system": "http://loinc.org", "code": "8480-6",
                                            "display": "Systolic blood pressure"}
    assert systolic["valueQuantity"] == {"value": 120, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org",
                                         "code": "mm[Hg]"}
    assert diastolic["valueQuantity"]["value"] == 95
    assert diastolic["interpretation"][0]["coding"][0]["code"] == "H"
    assert (diastolic["referenceRange"][0]["low"]["value"], diastolic["referenceRange"][0]["high"]["value"]) == (60, 80)
    [report] = services.client.search("DiagnosticReport", {})
    results = {r["reference"] for r in report["result"]}
    assert results == {f"Observation/{o['id']}" for o in obs.values()}  # the panel once, no component apart
    assert len(results) == 3 + 1 + 4  # the sample's three, the panel, the four single results


def test_structured_numeric_coded_and_text_values(services: Any) -> None:
    ingest_ok(services, ig_oru("v1"))
    obs = by_code(services)
    co2 = obs["11557-6"]["valueRange"]
    assert (co2["low"]["value"], co2["high"]["value"], co2["low"]["code"]) == (35, 45, "mm[Hg]")
    titer = obs["5047-6"]["valueRatio"]
    assert (titer["numerator"]["value"], titer["denominator"]["value"]) == (1, 128)
    organism = obs["600-7"]["valueCodeableConcept"]["coding"][0]
    assert (organism["system"], organism["code"]) == ("http://snomed.info/sct", "3092008")
    assert obs["8251-1"]["valueString"] == "Specimen slightly hemolyzed"
    assert "valueQuantity" not in obs["85354-9"]  # the panel itself carries no value


@pytest.mark.parametrize("version", ["2.3", "2.5.1", "2.8"])
def test_the_same_results_from_each_version_and_a_resend_updates_them(services: Any, version: str) -> None:
    """MSH-12 from 2.3 to 2.8 maps alike. The same results under a new control id find the same resources
    (their keys come from the order and the OBX): identical ones get no new version, a corrected one does."""
    ingest_ok(services, ig_oru(f"{version}-a", version))
    first = by_code(services)
    assert len(first) == 8
    corrected = ig_oru(f"{version}-b", version).replace(b"|4.1|120|", b"|4.1|125|")
    ingest_ok(services, corrected)
    again = by_code(services)
    assert {c: o["id"] for c, o in again.items()} == {c: o["id"] for c, o in first.items()}
    assert {c: o["meta"]["versionId"] for c, o in again.items() if o["meta"]["versionId"] != "1"} == {"85354-9": "2"}
    assert again["85354-9"]["component"][0]["valueQuantity"]["value"] == 125
