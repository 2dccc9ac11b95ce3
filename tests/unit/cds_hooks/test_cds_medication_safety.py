"""medication-safety on order-select and order-sign: allergies, DDIs (cited), duplicate classes."""

from __future__ import annotations

from typing import Any

from cds_hooks.cards import check_response
from cds_hooks.medknowledge import knowledge
from tests.unit.cds_hooks.cds_testutil import hook_request

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def draft(rid: str, pid: str, code: str | None, display: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": display}
    if code:
        concept["coding"] = [{"system": RX, "code": code, "display": display}]
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "medicationCodeableConcept": concept, "subject": {"reference": f"Patient/{pid}"}}


def orders(*mrs: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:{m['id']}", "resource": m} for m in mrs]}


def sign(cds: Any, pid: str, *mrs: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
    req = hook_request("order-sign", pid, draftOrders=orders(*mrs)) | {"fhirServer": "http://localhost/fhir"}
    r = cds.post("/cds-services/medication-safety-sign", req | extra)
    assert r.status_code == 200, r.get_json()
    assert check_response(r.get_json()) == []
    return r.get_json()["cards"]


def test_knowledge_table_is_consistent_and_cited() -> None:
    kb = knowledge()
    for i in kb.interactions:
        assert i.sources and all(s["url"].startswith("https://") for s in i.sources)
        for spec in i.a + i.b:
            assert spec.removeprefix("class:") in (kb.classes if spec.startswith("class:") else kb.ingredients)
    for ings in kb.products.values():
        assert all(i in kb.ingredients for i in ings)
    assert kb.ingredients_of({"coding": [{"system": RX, "code": "1310197"}]}) == {"acetaminophen", "hydrocodone"}
    assert kb.ingredients_of({"text": "Atorvastatin 20 MG Oral Tablet"}) == {"atorvastatin"}


def test_warfarin_patient_ordering_ibuprofen_gets_cited_ddi_with_replace(cds: Any) -> None:
    pid = cds.mem.load_synthea("Lea_Connelly")  # active warfarin, digoxin, verapamil, simvastatin
    cards = sign(cds, pid, draft("d1", pid, "310965", "Ibuprofen 200 MG Oral Tablet"))
    assert len(cards) == 1
    card = cards[0]
    assert card["indicator"] == "warning" and card["summary"] == "Major interaction: ibuprofen + warfarin"
    assert card["source"]["url"].startswith("https://dailymed.nlm.nih.gov")
    assert "doi.org/10.1136/amiajnl-2011-000612" in card["detail"]
    replace, delete = card["suggestions"]
    assert [a["type"] for a in replace["actions"]] == ["delete", "create"]
    assert replace["actions"][0]["resourceId"] == "MedicationRequest/d1"
    assert replace["actions"][1]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "313782"
    assert delete["actions"] == [{"type": "delete", "description": "Remove the draft order for "
                                  "Ibuprofen 200 MG Oral Tablet", "resourceId": "MedicationRequest/d1"}]
    assert card["selectionBehavior"] == "at-most-one" and len(card["overrideReasons"]) == 4


def test_duplicate_class_by_name_and_duplicate_ingredient(cds: Any) -> None:
    pid = cds.mem.load_synthea("Lea_Connelly")
    [dup] = sign(cds, pid, draft("d2", pid, None, "Atorvastatin 20 MG Oral Tablet"))
    assert dup["summary"].startswith("Duplicate therapy (HMG-CoA reductase inhibitor (statin))")
    pid2 = cds.mem.load_synthea("Charlotte_Padberg")  # active acetaminophen/hydrocodone
    cards = sign(cds, pid2, draft("d3", pid2, "313782", "Acetaminophen 325 MG Oral Tablet"))
    assert [c["summary"] for c in cards] == ["Duplicate therapy (acetaminophen): Acetaminophen 325 MG Oral Tablet"]


def test_allergy_to_penicillin_class_is_critical_and_inactive_allergy_is_ignored(cds: Any) -> None:
    cds.mem.put({"resourceType": "Patient", "id": "p2"})
    allergy = {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p2"},
               "criticality": "high", "code": {"coding": [{"system": "http://snomed.info/sct",
                                                           "code": "91936005", "display": "Allergy to penicillin"}]},
               "reaction": [{"manifestation": [{"text": "anaphylaxis"}]}]}
    cds.mem.put(allergy)
    amox = draft("d4", "p2", "562251", "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet")
    [card] = sign(cds, "p2", amox)
    assert card["indicator"] == "critical" and card["summary"].startswith("Allergy: Allergy to penicillin")
    assert "anaphylaxis" in card["detail"] and "amoxicillin" in card["summary"]
    cds.mem.put(allergy | {"clinicalStatus": {"coding": [{"code": "resolved"}]}})
    assert sign(cds, "p2", amox) == []


def test_unrelated_allergies_and_meds_do_not_fire(cds: Any) -> None:
    pid = cds.mem.load_synthea("Alden_Considine")  # mould and dander allergies, ferrous sulfate
    assert sign(cds, pid, draft("d5", pid, "562251", "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet"),
                draft("d6", pid, "860975", "24 HR Metformin hydrochloride 500 MG")) == []


def test_order_select_checks_only_the_selected_order(cds: Any) -> None:
    pid = cds.mem.load_synthea("Lea_Connelly")
    ibu, met = draft("d7", pid, "310965", "Ibuprofen 200 MG"), draft("d8", pid, "860975", "Metformin")
    for selected, n in (("d8", 0), ("d7", 1)):
        req = hook_request("order-select", pid, draftOrders=orders(ibu, met),
                           selections=[f"MedicationRequest/{selected}"]) | {"fhirServer": "http://localhost/fhir"}
        body = cds.post("/cds-services/medication-safety-select", req).get_json()
        assert len(body["cards"]) == n and check_response(body) == []


def test_interacting_drafts_and_opioid_benzodiazepine(cds: Any) -> None:
    cds.mem.put({"resourceType": "Patient", "id": "p3"})
    cards = sign(cds, "p3", draft("d9", "p3", "705129", "Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray"),
                 draft("d10", "p3", None, "sildenafil 50 MG Oral Tablet"))
    assert [(c["indicator"], c["summary"]) for c in cards] == [
        ("critical", "Contraindicated interaction: nitroglycerin + sildenafil")]
    cds.mem.put(draft("m1", "p3", "1049221", "Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG")
                | {"status": "active"})
    cards = sign(cds, "p3", draft("d11", "p3", "1298088", "Flurazepam Hydrochloride 15 MG Oral Capsule"))
    assert [c["summary"] for c in cards] == ["Major interaction: flurazepam + oxycodone"]
    assert "fda.gov" in cards[0]["source"]["url"]
