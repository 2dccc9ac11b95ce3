"""patient-view problem-list-gaps: conditions affirmed in recent notes but missing from the problem list.

Notes are DocumentReference and DiagnosticReport.presentedForm text attachments;
the NLP package (medSpaCy rules) finds condition mentions with their assertion
status; each affirmed, uncovered condition becomes a suggestion to create a
provisional Condition plus a Provenance that points at the note and the span.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from cds_hooks.cards import Action, Card, CdsResponse, Suggestion, new_id, override_reason
from cds_hooks.fhirdata import codings, concept_text, parse_dt
from cds_hooks.prefetch import PrefetchData
from cds_hooks.registry import CdsService, ServiceEnv

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
MAX_NOTES = 5
NOTE_WINDOW = timedelta(days=365)
SPAN_EXT = "http://digitalfront.dev/fhir/StructureDefinition/evidence-span"
CAT_CS = "http://terminology.hl7.org/CodeSystem/condition-category"


_cache: OrderedDict[str, list[Any]] = OrderedDict()
_lock = threading.Lock()
CACHE_SIZE = 2048


def _nlp() -> Any | None:
    try:
        from nlp.pipeline import shared_pipeline
    except ImportError:
        return None
    return shared_pipeline()


def mentions(pipeline: Any, text: str) -> list[Any]:
    """NLP mentions of a note, cached by content hash: a chart reopened re-reads the same notes.

    The lock also serializes use of the shared spaCy pipeline, which is not documented thread-safe."""
    key = hashlib.sha256(text.encode()).hexdigest()
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
        found = list(pipeline.extract(text))
        _cache[key] = found
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return found


def _text(att: Any) -> str | None:
    if not isinstance(att, dict) or not str(att.get("contentType", "text/plain")).startswith("text/"):
        return None
    if not att.get("data"):
        return None
    try:
        return base64.b64decode(att["data"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def notes(data: PrefetchData, now: datetime) -> list[tuple[JsonDict, str]]:
    """(note resource, text) of the most recent notes with inline text, newest first."""
    found: list[tuple[datetime, JsonDict, str]] = []
    for d in data.resources("notes", "DocumentReference"):
        if d.get("status") in ("superseded", "entered-in-error"):
            continue
        when = parse_dt(d.get("date")) or parse_dt((d.get("context") or {}).get("period", {}).get("start"))
        for c in d.get("content") or []:
            text = _text(c.get("attachment"))
            if text and when and now - when <= NOTE_WINDOW:
                found.append((when, d, text))
    for r in data.resources("reports", "DiagnosticReport"):
        when = parse_dt(r.get("issued")) or parse_dt(r.get("effectiveDateTime"))
        for att in r.get("presentedForm") or []:
            text = _text(att)
            if text and when and now - when <= NOTE_WINDOW and r.get("status") != "entered-in-error":
                found.append((when, r, text))
    found.sort(key=lambda t: t[0], reverse=True)
    return [(r, t) for _, r, t in found[:MAX_NOTES]]


def _covered(mention: Any, conditions: list[JsonDict]) -> bool:
    codes = {(c.system, c.code) for c in mention.codes}
    bare = {c.code for c in mention.codes}
    phrases = [re.compile(r"\b" + re.escape(w.lower()) + r"\b") for w in {mention.concept, mention.text} if w]
    for cond in conditions:
        verification = {c.get("code") for c in codings(cond.get("verificationStatus"))}
        if verification & {"refuted", "entered-in-error"}:
            continue
        for c in codings(cond.get("code")):
            if (c.get("system"), c.get("code")) in codes or c.get("code") in bare:
                return True
        text = " ".join([concept_text(cond.get("code"))] + [str(c.get("display") or "")
                                                             for c in codings(cond.get("code"))]).lower()
        if any(p.search(text) for p in phrases):
            return True
    return False


class ProblemListGaps(CdsService):
    id = "problem-list-gaps"
    hook = "patient-view"
    title = "Problem list gaps from clinical notes (NLP)"
    description = ("Finds conditions affirmed in the patient's recent notes that are not on the problem "
                   "list and proposes provisional Conditions with Provenance pointing at the note text.")
    prefetch = {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}&_count=500",
        "notes": "DocumentReference?patient={{context.patientId}}&_sort=-date&_count=10",
        "reports": "DiagnosticReport?patient={{context.patientId}}&_sort=-date&_count=10",
    }
    required_prefetch = frozenset({"patient"})

    def warm(self, settings: Any) -> None:
        pipeline = _nlp()  # builds the medSpaCy pipeline (seconds)
        if pipeline is not None:
            pipeline.extract("Warm-up: no acute distress.")

    def invoke(self, request: JsonDict, data: PrefetchData, env: ServiceEnv,
               now: datetime | None = None) -> CdsResponse:
        now = now or datetime.now(UTC)
        pid = request["context"]["patientId"]
        todo = notes(data, now)
        if not todo:
            return CdsResponse()
        pipeline = _nlp()
        if pipeline is None:
            log.info("problem-list-gaps: NLP package not installed")
            return CdsResponse()
        conditions = data.resources("conditions", "Condition")
        suggestions: list[Suggestion] = []
        lines: list[str] = []
        seen: set[str] = set()
        for note, text in todo:
            for m in mentions(pipeline, text):
                if (m.category != "condition" or not m.asserted or m.uncertain or m.concept_id in seen
                        or _covered(m, conditions)):
                    continue
                seen.add(m.concept_id)
                ref = f"{note['resourceType']}/{note.get('id')}"
                quote = text[m.sentence_start:m.sentence_end].strip()[:200]
                suggestions.append(self._suggestion(pid, m, ref, now))
                lines.append(f"- **{m.concept}**{' (history)' if m.historical else ''}: “{quote}” ({ref})")
        if not suggestions:
            return CdsResponse()
        names = ", ".join(s.label.removeprefix("Add provisional: ") for s in suggestions)
        card = Card(
            summary=f"{len(suggestions)} condition(s) in notes missing from the problem list"[:139],
            indicator="info", detail=f"Affirmed in recent notes but not on the problem list: {names}\n\n"
                                     + "\n".join(lines),
            source_label="DigitalFront clinical NLP (medSpaCy rules)",
            suggestions=suggestions, selection_behavior="any",
            override_reasons=[override_reason("not-a-problem", "Not an active problem"),
                              override_reason("nlp-error", "Text was misread")],
            links=[env.patient_link(pid, "Review the problem list in DigitalFront")])
        return CdsResponse(cards=[card])

    def _suggestion(self, pid: str, m: Any, note_ref: str, now: datetime) -> Suggestion:
        from nlp.fhir_mapping import nlp_attribution  # (only called with NLP mentions: the package is there)

        cond_id = new_id()
        condition: JsonDict = {
            "resourceType": "Condition", "id": cond_id,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "resolved" if m.historical else "active"}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "provisional"}]},
            "category": [{"coding": [{"system": CAT_CS, "code": "problem-list-item"}]}],
            "code": {"coding": [c.to_fhir() for c in m.codes], "text": m.concept},
            "subject": {"reference": f"Patient/{pid}"},
            "evidence": [{"detail": [{"reference": note_ref}]}],
            "note": [{"text": f"Suggested from note text: “{m.text}”"}],
        }
        if not condition["code"]["coding"]:
            del condition["code"]["coding"]
        provenance: JsonDict = {
            "resourceType": "Provenance", "id": new_id(),
            "target": [{"reference": f"Condition/{cond_id}"}],
            "recorded": now.isoformat(timespec="seconds"),
            "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                     "code": "CREATE"}]},
            **nlp_attribution(),  # the pipeline and rule-set versions, as on $extract's output
            "entity": [{"role": "source", "what": {
                "reference": note_ref, "display": m.text},
                "extension": [{"url": SPAN_EXT, "extension": [
                    {"url": "start", "valueInteger": m.start}, {"url": "end", "valueInteger": m.end}]}]}],
        }
        return Suggestion(f"Add provisional: {m.concept}", [
            Action("create", f"Add {m.concept} to the problem list as provisional", condition),
            Action("create", "Record where it came from (note and text span)", provenance)])


SERVICE = ProblemListGaps()
