"""Mentions -> a FHIR R4 Bundle of reviewable, coded resources with evidence spans and a Provenance.

Mapping decisions (see docs/nlp.md):
- Condition.verificationStatus: negated -> refuted, uncertain -> provisional, else confirmed;
  Condition.clinicalStatus: historical -> inactive ("resolved" when the note says so), else active.
- Family-history mentions become FamilyMemberHistory (one per relative), never patient Conditions.
- Hypothetical mentions ("return if chest pain") are not facts and are left out unless asked for.
- Several mentions of one concept with the same assertion become one resource with several evidence spans.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from nlp.mention import Mention
from nlp.pipeline import pipeline_label
from nlp.ruleset import SYSTEMS, RuleSet, default_ruleset

EVIDENCE_URL = "https://digitalfront.dev/fhir/StructureDefinition/nlp-evidence"
SOURCE_TAG_SYSTEM = "https://digitalfront.dev/fhir/CodeSystem/nlp-source"
RULESET_POLICY_PREFIX = "urn:digitalfront:nlp:ruleset:"
OUTPUT_TYPES = ("Condition", "MedicationStatement", "AllergyIntolerance", "Procedure", "Observation",
                "FamilyMemberHistory", "Provenance")

_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFY = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_AI_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
_AI_VERIFY = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

_RELATIONSHIP = {
    "mother": ("MTH", "mother"), "mom": ("MTH", "mother"), "father": ("FTH", "father"),
    "dad": ("FTH", "father"), "sister": ("SIS", "sister"), "sisters": ("SIS", "sister"),
    "brother": ("BRO", "brother"), "brothers": ("BRO", "brother"), "sibling": ("SIB", "sibling"),
    "siblings": ("SIB", "sibling"), "grandmother": ("GRMTH", "grandmother"),
    "grandfather": ("GRFTH", "grandfather"), "grandparent": ("GRPRN", "grandparent"),
    "grandparents": ("GRPRN", "grandparent"), "aunt": ("AUNT", "aunt"), "aunts": ("AUNT", "aunt"),
    "uncle": ("UNCLE", "uncle"), "uncles": ("UNCLE", "uncle"), "cousin": ("COUSN", "cousin"),
    "cousins": ("COUSN", "cousin"), "son": ("SONC", "son"), "sons": ("SONC", "son"),
    "daughter": ("DAUC", "daughter"), "daughters": ("DAUC", "daughter"), "parent": ("PRN", "parent"),
    "parents": ("PRN", "parent"), "twin": ("TWIN", "twin"),
}
_FOOD = {"peanut_allergy", "nut_allergy", "shellfish_allergy", "fish_allergy", "egg_allergy", "dairy_allergy",
         "wheat_allergy", "soy_allergy"}
_ENVIRONMENT = {"latex_allergy", "dust_mite_allergy", "dander_allergy", "mold_allergy", "grass_pollen_allergy",
                "tree_pollen_allergy", "bee_venom_allergy"}
_VALUE = re.compile(r"^\W{0,3}(?:(?:of|is|was|at|=|:)\s*){0,2}(\d{1,4}(?:\.\d{1,3})?)\s*(%|mg/dl|mmol/l|mg/l|ng/ml|"
                    r"meq/l|g/dl|k/ul|pg/ml|ml/min(?:/1\.73\s?m2)?|mm\s?hg|bpm)?", re.IGNORECASE)


def source_tag(note_ref: str) -> dict[str, str]:
    """meta.tag that marks every resource derived from one note, so re-processing can replace them."""
    return {"system": SOURCE_TAG_SYSTEM, "code": note_ref}


def text_ref(text: str) -> str:
    """Stable pseudo-reference for raw text that has no DocumentReference."""
    return "text-sha256-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _cc(m: Mention) -> dict[str, Any]:
    out: dict[str, Any] = {"text": m.concept}
    if m.codes:
        out["coding"] = [c.to_fhir() for c in m.codes]
    return out


def _is_doc_ref(note_ref: str) -> bool:
    return "/" in note_ref


def _evidence(m: Mention, note_ref: str) -> dict[str, Any]:
    ext: list[dict[str, Any]] = []
    if _is_doc_ref(note_ref):
        ext.append({"url": "document", "valueReference": {"reference": note_ref}})
    ext += [{"url": "start", "valueInteger": m.start}, {"url": "end", "valueInteger": m.end},
            {"url": "text", "valueString": m.text}]
    if m.section:
        ext.append({"url": "section", "valueString": m.section})
    ext += [{"url": "modifier", "valueString": mod} for mod in m.modifiers]
    return {"url": EVIDENCE_URL, "extension": ext}


class _Builder:
    def __init__(self, patient_ref: str, note_ref: str, text: str | None, encounter_ref: str | None,
                 recorded: str, include_hypothetical: bool) -> None:
        self.patient_ref = patient_ref
        self.note_ref = note_ref
        self.text = text
        self.encounter_ref = encounter_ref
        self.recorded = recorded
        self.include_hypothetical = include_hypothetical
        self.resources: dict[tuple[Any, ...], dict[str, Any]] = {}

    def _base(self, rtype: str, key: tuple[Any, ...], m: Mention) -> tuple[dict[str, Any], bool]:
        full_key = (rtype, *key)
        res = self.resources.get(full_key)
        if res is not None:
            res["extension"].append(_evidence(m, self.note_ref))
            return res, False
        res = {"resourceType": rtype, "meta": {"tag": [source_tag(self.note_ref)]},
               "extension": [_evidence(m, self.note_ref)]}
        self.resources[full_key] = res
        return res, True

    def _subject(self) -> dict[str, str]:
        return {"reference": self.patient_ref}

    def add(self, m: Mention) -> None:
        if m.hypothetical and not self.include_hypothetical:
            return
        if m.family:
            self._family(m)
        elif m.category in ("condition", "symptom"):
            self._condition(m)
        elif m.category == "medication":
            self._medication(m)
        elif m.category == "allergy":
            self._allergy(m)
        elif m.category == "procedure":
            self._procedure(m)
        elif m.category == "finding":
            self._observation(m)

    def _condition(self, m: Mention) -> None:
        verification = "refuted" if m.negated else "provisional" if (m.uncertain or m.hypothetical) else "confirmed"
        if m.negated:
            clinical = "inactive"
        elif m.historical:
            clinical = "resolved" if any("resolved" in x.lower() for x in m.modifiers) else "inactive"
        else:
            clinical = "active"
        res, new = self._base("Condition", (m.concept_id, verification, clinical), m)
        if not new:
            return
        category = "problem-list-item" if m.category == "condition" else "encounter-diagnosis"
        res.update({
            "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": clinical}]},
            "verificationStatus": {"coding": [{"system": _VERIFY, "code": verification}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": category}]}],
            "code": _cc(m), "subject": self._subject(), "recordedDate": self.recorded,
        })
        if _is_doc_ref(self.note_ref):
            res["evidence"] = [{"detail": [{"reference": self.note_ref}]}]
        if self.encounter_ref:
            res["encounter"] = {"reference": self.encounter_ref}

    def _medication(self, m: Mention) -> None:
        status = ("not-taken" if m.negated else "intended" if m.hypothetical else
                  "completed" if m.historical else "unknown" if m.uncertain else "active")
        res, new = self._base("MedicationStatement", (m.concept_id, status), m)
        if not new:
            return
        res.update({"status": status, "medicationCodeableConcept": _cc(m), "subject": self._subject(),
                    "dateAsserted": self.recorded})
        if _is_doc_ref(self.note_ref):
            res["derivedFrom"] = [{"reference": self.note_ref}]
        if self.encounter_ref:
            res["context"] = {"reference": self.encounter_ref}

    def _allergy(self, m: Mention) -> None:
        verification = "refuted" if m.negated else "unconfirmed" if (m.uncertain or m.hypothetical) else "confirmed"
        res, new = self._base("AllergyIntolerance", (m.concept_id, verification), m)
        if new:
            rx = any(c.system == SYSTEMS["rxnorm"] for c in m.codes)
            category = ("food" if m.concept_id in _FOOD else "environment" if m.concept_id in _ENVIRONMENT
                        else "medication" if rx or m.concept_id.endswith("_allergy") else None)
            res.update({
                "clinicalStatus": {"coding": [{"system": _AI_CLINICAL,
                                               "code": "inactive" if m.historical else "active"}]},
                "verificationStatus": {"coding": [{"system": _AI_VERIFY, "code": verification}]},
                "type": "allergy", "code": _cc(m), "patient": self._subject(), "recordedDate": self.recorded,
            })
            if category and m.concept_id != "no_known_allergies":
                res["category"] = [category]
        if m.reactions:
            rs = default_ruleset()
            manifestations = [{"coding": [c.to_fhir() for c in rs.concepts[r].codes if c.system == SYSTEMS["sct"]],
                               "text": rs.concepts[r].display} for r in m.reactions if r in rs.concepts]
            if manifestations:
                res.setdefault("reaction", [{"manifestation": []}])[0]["manifestation"].extend(manifestations)

    def _procedure(self, m: Mention) -> None:
        status = ("not-done" if m.negated else "preparation" if m.hypothetical else
                  "unknown" if m.uncertain else "completed")
        res, new = self._base("Procedure", (m.concept_id, status), m)
        if new:
            res.update({"status": status, "code": _cc(m), "subject": self._subject()})
            if self.encounter_ref:
                res["encounter"] = {"reference": self.encounter_ref}

    def _observation(self, m: Mention) -> None:
        is_lab = all(c.system == SYSTEMS["loinc"] for c in m.codes) and bool(m.codes)
        value = self._lab_value(m) if is_lab else None
        if is_lab and (m.negated or value is None):
            return  # a lab named without a result is not an observation
        key: tuple[Any, ...] = (m.concept_id, m.negated, m.start if is_lab else None)
        res, new = self._base("Observation", key, m)
        if not new:
            return
        res.update({"status": "preliminary", "code": _cc(m), "subject": self._subject(),
                    "issued": self.recorded})
        res["category"] = [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory" if is_lab else "exam"}]}]
        if value is not None:
            res["valueQuantity"] = value
        else:
            res["valueBoolean"] = not m.negated
        if _is_doc_ref(self.note_ref):
            res["derivedFrom"] = [{"reference": self.note_ref}]
        if self.encounter_ref:
            res["encounter"] = {"reference": self.encounter_ref}

    def _lab_value(self, m: Mention) -> dict[str, Any] | None:
        if self.text is None:
            return None
        match = _VALUE.match(self.text[m.end:min(m.sentence_end, m.end + 40)])
        if not match:
            return None
        q: dict[str, Any] = {"value": float(match.group(1))}
        if match.group(2):
            q["unit"] = match.group(2)
        return q

    def _family(self, m: Mention) -> None:
        if m.negated:
            return  # "no family history of X" is not a relative's condition
        code, display = _RELATIONSHIP.get(m.family_member or "", ("FAMMEMB", "family member"))
        if self.text is not None and code in ("GRMTH", "GRFTH", "AUNT", "UNCLE"):
            window = self.text[max(m.sentence_start, m.start - 60):m.end + 60].lower()
            side = "M" if "maternal" in window else "P" if "paternal" in window else ""
            code = side + code if side else code
        res, new = self._base("FamilyMemberHistory", (code,), m)
        if new:
            res.update({"status": "partial", "patient": self._subject(), "date": self.recorded[:10],
                        "relationship": {"coding": [{"system": _ROLE, "code": code, "display": display}]},
                        "condition": []})
        if not any(c["code"].get("text") == m.concept for c in res["condition"]):
            res["condition"].append({"code": _cc(m)})


def nlp_attribution(ruleset: RuleSet | None = None) -> dict[str, Any]:
    """A Provenance's ``policy`` and ``agent`` naming the pipeline (medSpaCy and model versions) and the rule
    set's name and version, for every Provenance the NLP's output is written or suggested with."""
    rs = ruleset or default_ruleset()
    return {
        "policy": [f"{RULESET_POLICY_PREFIX}{rs.name}@{rs.version}"],
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                 "code": "assembler"}]},
            "who": {"display": f"{pipeline_label()}; rules {rs.label}"},
        }],
    }


def to_bundle(mentions: Iterable[Mention], patient_ref: str, note_ref: str, *, text: str | None = None,
              encounter_ref: str | None = None, recorded: str | None = None, bundle_type: str = "collection",
              include_hypothetical: bool = False, ruleset: RuleSet | None = None) -> dict[str, Any]:
    """Build the Bundle. ``bundle_type="transaction"`` adds POST requests so it can be written as is.

    ``note_ref`` is ``DocumentReference/<id>`` (or ``DiagnosticReport/<id>``), or a ``text_ref`` for raw text.
    ``text`` (the analysed text) lets lab values next to a lab name be read.
    """
    if bundle_type not in ("collection", "transaction"):
        raise ValueError("bundle_type must be 'collection' or 'transaction'")
    rs = ruleset or default_ruleset()
    recorded = recorded or datetime.now(UTC).replace(microsecond=0).isoformat()
    b = _Builder(patient_ref, note_ref, text, encounter_ref, recorded, include_hypothetical)
    for m in mentions:
        b.add(m)
    entries: list[dict[str, Any]] = []
    targets: list[dict[str, str]] = []
    for key, res in b.resources.items():
        full_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, repr((note_ref, key)))}"
        entries.append(_entry(full_url, res, bundle_type))
        targets.append({"reference": full_url})
    if entries:
        prov: dict[str, Any] = {
            "resourceType": "Provenance", "meta": {"tag": [source_tag(note_ref)]},
            "target": targets, "recorded": recorded, **nlp_attribution(rs),
        }
        if _is_doc_ref(note_ref):
            prov["entity"] = [{"role": "source", "what": {"reference": note_ref}}]
        full_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, repr((note_ref, 'Provenance')))}"
        entries.append(_entry(full_url, prov, bundle_type))
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}


def _entry(full_url: str, res: dict[str, Any], bundle_type: str) -> dict[str, Any]:
    e: dict[str, Any] = {"fullUrl": full_url, "resource": res}
    if bundle_type == "transaction":
        e["request"] = {"method": "POST", "url": res["resourceType"]}
    return e


def resources_of(bundle: dict[str, Any], rtype: str) -> Sequence[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == rtype]
