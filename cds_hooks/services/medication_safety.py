"""order-select / order-sign medication-safety: allergy, drug-drug interaction and duplicate-class checks.

Uses the project's medication knowledge (``data/medication_knowledge.json``): each
DDI card cites the sources of its table row. On order-select only the selected
orders are checked (the clinician is still choosing); on order-sign every draft is.
"""

from __future__ import annotations

from typing import Any

from cds_hooks.cards import Action, Card, CdsResponse, Suggestion, new_id, override_reason
from cds_hooks.fhirdata import RXNORM, concept_text
from cds_hooks.medknowledge import Interaction, MedKnowledge, knowledge
from cds_hooks.prefetch import PrefetchData
from cds_hooks.registry import CdsService, ServiceEnv

JsonDict = dict[str, Any]
SEVERITY_INDICATOR = {"contraindicated": "critical", "major": "warning", "moderate": "info"}
SOURCE_LABEL = "DigitalFront medication safety (project-maintained knowledge table)"
OVERRIDES = [override_reason("benefit-outweighs-risk", "Benefit outweighs risk"),
             override_reason("monitoring-in-place", "Will monitor closely"),
             override_reason("patient-tolerated", "Patient has tolerated this before"),
             override_reason("data-incorrect", "Allergy or medication list is incorrect")]


def _med_text(mr: JsonDict) -> str:
    return concept_text(mr.get("medicationCodeableConcept")) or "this medication"


def _delete(mr: JsonDict, label: str) -> Suggestion:
    return Suggestion(label, [Action("delete", f"Remove the draft order for {_med_text(mr)}",
                                     resource_id=f"MedicationRequest/{mr.get('id')}")])


def _replace(mr: JsonDict, alt: JsonDict) -> Suggestion:
    new = {k: v for k, v in mr.items() if k not in ("id", "meta", "text", "dosageInstruction")}
    new.update({"id": new_id(), "status": "draft",
                "medicationCodeableConcept": {"coding": [{"system": RXNORM, **alt}], "text": alt["display"]}})
    return Suggestion(f"Replace with {alt['display']}", [
        Action("delete", f"Remove the draft order for {_med_text(mr)}",
               resource_id=f"MedicationRequest/{mr.get('id')}"),
        Action("create", f"Order {alt['display']} instead (dose to be confirmed)", new)])


def _active_allergy(a: JsonDict) -> bool:
    clinical = {c.get("code") for c in (a.get("clinicalStatus") or {}).get("coding") or []}
    verification = {c.get("code") for c in (a.get("verificationStatus") or {}).get("coding") or []}
    return not (clinical & {"inactive", "resolved"}) and not (verification & {"refuted", "entered-in-error"})


class MedicationSafety(CdsService):
    title = "Medication safety: allergies, interactions, duplicate therapy"
    description = ("Checks draft medication orders against the patient's allergies, active medications "
                   "(drug-drug interactions from a cited, project-maintained table) and therapeutic-class "
                   "duplicates, with remove/replace suggestions.")
    prefetch = {
        "patient": "Patient/{{context.patientId}}",
        "medications": "MedicationRequest?patient={{context.patientId}}&status=active,on-hold",
        "allergies": "AllergyIntolerance?patient={{context.patientId}}",
    }
    required_prefetch = frozenset({"patient"})

    def __init__(self, service_id: str, hook: str) -> None:
        self.id = service_id  # type: ignore[misc]
        self.hook = hook  # type: ignore[misc]

    def invoke(self, request: JsonDict, data: PrefetchData, env: ServiceEnv) -> CdsResponse:
        kb = knowledge()
        ctx = request["context"]
        drafts = [e["resource"] for e in (ctx.get("draftOrders") or {}).get("entry") or []
                  if isinstance(e.get("resource"), dict)
                  and e["resource"].get("resourceType") == "MedicationRequest"]
        if self.hook == "order-select":
            selected = {s.split("/", 1)[1] for s in ctx.get("selections") or []
                        if s.startswith("MedicationRequest/")}
            targets = [d for d in drafts if d.get("id") in selected]
        else:
            targets = drafts
        draft_ids = {d.get("id") for d in drafts}
        active = [m for m in data.resources("medications", "MedicationRequest")
                  if m.get("status") in ("active", "on-hold") and m.get("id") not in draft_ids]
        allergies = [a for a in data.resources("allergies", "AllergyIntolerance") if _active_allergy(a)]
        cards: list[Card] = []
        seen: set[tuple[str, ...]] = set()
        patient_link = env.patient_link(ctx["patientId"], "Open the medication list in DigitalFront")
        for i, order in enumerate(targets):
            ings = kb.ingredients_of(order.get("medicationCodeableConcept"))
            if not ings:
                continue
            cards.extend(self._allergy_cards(kb, order, ings, allergies))
            # each pair of drafts once; on order-select every other draft counts
            later = drafts if self.hook == "order-select" else drafts[i + 1:]
            others = [m for m in later if m is not order] + active
            for other in others:
                other_ings = kb.ingredients_of(other.get("medicationCodeableConcept"))
                for x in sorted(ings):
                    for y in sorted(other_ings):
                        for inter, side in kb.interactions_between(x, y):
                            key = ("ddi", str(order.get("id")), str(other.get("id")), inter.id)
                            if key not in seen:
                                seen.add(key)
                                cards.append(self._ddi_card(kb, order, other, x, y, inter, side))
                        shared = set(kb.classes_of(x)) & set(kb.classes_of(y))
                        if x == y or shared:
                            key = ("dup", str(order.get("id")), str(other.get("id")), "")
                            if key not in seen:
                                seen.add(key)
                                what = x if x == y else kb.classes[sorted(shared)[0]]["name"]
                                cards.append(self._dup_card(order, other, what))
        for c in cards:
            c.links.append(patient_link)
        return CdsResponse(cards=cards)

    def _allergy_cards(self, kb: MedKnowledge, order: JsonDict, ings: set[str],
                       allergies: list[JsonDict]) -> list[Card]:
        out = []
        for a in allergies:
            a_ings, a_classes = kb.allergy_targets(a.get("code"))
            hit = sorted(i for i in ings if i in a_ings or set(kb.classes_of(i)) & a_classes)
            if not hit:
                continue
            allergy = concept_text(a.get("code")) or "a recorded allergy"
            high = a.get("criticality") == "high"
            reactions = ", ".join(concept_text(m) for r in a.get("reaction") or []
                                  for m in r.get("manifestation") or [] if concept_text(m))
            out.append(Card(
                summary=f"Allergy: {allergy} — {_med_text(order)} contains {', '.join(hit)}",
                indicator="critical" if high else "warning",
                detail=(f"The patient has an active allergy record **{allergy}**"
                        f" (criticality: {a.get('criticality', 'unknown')}"
                        + (f"; reactions: {reactions}" if reactions else "") + f"). The draft order for "
                        f"**{_med_text(order)}** contains {', '.join(hit)}."),
                source_label=SOURCE_LABEL, suggestions=[_delete(order, f"Remove {_med_text(order)}")],
                selection_behavior="at-most-one", override_reasons=OVERRIDES))
        return out

    def _ddi_card(self, kb: MedKnowledge, order: JsonDict, other: JsonDict, x: str, y: str,
                  inter: Interaction, side: str) -> Card:
        suggestions = [_delete(order, f"Remove {_med_text(order)}")]
        if inter.alternative_for == side:
            for cls in kb.classes_of(x):
                alt = kb.raw["alternatives"].get(cls)
                if alt:
                    suggestions.insert(0, _replace(order, alt))
        refs = "\n".join(f"- [{s['label']}]({s['url']})" for s in inter.sources)
        state = other.get("status", "draft")
        return Card(
            summary=f"{inter.severity.capitalize()} interaction: {x} + {y}",
            indicator=SEVERITY_INDICATOR.get(inter.severity, "warning"),
            detail=(f"**{_med_text(order)}** interacts with **{_med_text(other)}** ({state}).\n\n"
                    f"Effect: {inter.effect}\n\nManagement: {inter.management}\n\nSources:\n{refs}"),
            source_label=SOURCE_LABEL, source_url=inter.sources[0]["url"],
            source_topic={"system": "http://digitalfront.dev/fhir/CodeSystem/ddi", "code": inter.id,
                          "display": f"{x} + {y}"},
            suggestions=suggestions, selection_behavior="at-most-one", override_reasons=OVERRIDES)

    def _dup_card(self, order: JsonDict, other: JsonDict, what: str) -> Card:
        return Card(
            summary=f"Duplicate therapy ({what}): {_med_text(order)}"[:139],
            indicator="warning",
            detail=(f"**{_med_text(order)}** duplicates **{_med_text(other)}** "
                    f"({other.get('status', 'draft')}): both are {what}."),
            source_label=SOURCE_LABEL, suggestions=[_delete(order, f"Remove {_med_text(order)}")],
            selection_behavior="at-most-one", override_reasons=OVERRIDES)


SERVICES = [MedicationSafety("medication-safety-select", "order-select"),
            MedicationSafety("medication-safety-sign", "order-sign")]
