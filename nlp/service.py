"""The NLP service used by the $extract operation, the after-commit subscriber and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nlp.fhir_mapping import text_ref, to_bundle
from nlp.mention import Mention
from nlp.notes import encounter_of, note_text, patient_of
from nlp.persist import replace_output
from nlp.pipeline import ClinicalNlp, shared_pipeline


@dataclass
class Extraction:
    note_ref: str
    patient_ref: str | None
    mentions: list[Mention]
    bundle: dict[str, Any]


class NlpService:
    def __init__(self, pipeline: ClinicalNlp | None = None) -> None:
        self._pipeline = pipeline

    @property
    def pipeline(self) -> ClinicalNlp:
        if self._pipeline is None:
            self._pipeline = shared_pipeline()
        return self._pipeline

    def extract_text(self, text: str, patient_ref: str | None, *, note_ref: str | None = None,
                     encounter_ref: str | None = None, include_hypothetical: bool = False,
                     bundle_type: str = "collection") -> Extraction:
        mentions = self.pipeline.extract(text)
        ref = note_ref or text_ref(text)
        bundle = to_bundle(mentions, patient_ref or "Patient/unknown", ref, text=text, encounter_ref=encounter_ref,
                           include_hypothetical=include_hypothetical, bundle_type=bundle_type)
        return Extraction(ref, patient_ref, mentions, bundle)

    def extract_note(self, note: dict[str, Any], client: Any | None = None, *, include_hypothetical: bool = False,
                     bundle_type: str = "collection") -> Extraction:
        read = client.read if client is not None else None
        text = note_text(note, read)
        note_ref = f"{note['resourceType']}/{note['id']}"
        return self.extract_text(text, patient_of(note), note_ref=note_ref, encounter_ref=encounter_of(note),
                                 include_hypothetical=include_hypothetical, bundle_type=bundle_type)

    def persist(self, extraction: Extraction, client: Any) -> dict[str, Any]:
        if extraction.bundle.get("type") != "transaction":
            raise ValueError("persist needs a transaction bundle")
        return replace_output(client, extraction.bundle, extraction.note_ref)
