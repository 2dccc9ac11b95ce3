"""QuickUMLS as the optional UMLS matcher, on the sample UMLS index medspacy-quickumls installs (built from
the NLM's public UMLS sample), offline: its stop-word corpus comes from spaCy, not from a download."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlp.fhir_mapping import resources_of, to_bundle
from nlp.quickumls import UMLS_SYSTEM, concept_of

TEXT = "History of hypertension. Decreased dipalmitoyllecithin content found in lung specimens."


@pytest.fixture(scope="module")
def sample_index() -> str:
    quickumls = pytest.importorskip("quickumls", reason="medspacy-quickumls (a medSpaCy dependency) is missing")
    index = Path(quickumls.__file__).resolve().parents[1] / "resources" / "quickumls" / \
        "QuickUMLS_SAMPLE_lowercase_POSIX_unqlite"
    if not index.is_dir():
        pytest.skip(f"the sample QuickUMLS index is not installed at {index}")
    return str(index)


def test_umls_concepts_join_the_rule_sets_when_an_index_is_configured(sample_index: str) -> None:
    from nlp.pipeline import ClinicalNlp

    with_umls = ClinicalNlp(quickumls=sample_index).extract(TEXT)
    found = {m.concept_id: m for m in with_umls}
    assert "hypertension" in {m.concept.lower() for m in with_umls}  # the rule set's, as without QuickUMLS
    umls = found["umls:C0000039"]  # dipalmitoyllecithin: semantic types T119/T121 (a pharmacologic substance)
    assert umls.category == "medication" and umls.text == "dipalmitoyllecithin"
    assert [c.to_fhir() for c in umls.codes] == [{"system": UMLS_SYSTEM, "code": "C0000039",
                                                  "display": "dipalmitoyllecithin"}]
    assert TEXT[umls.start:umls.end] == "dipalmitoyllecithin"
    statements = resources_of(to_bundle(with_umls, "Patient/p1", "DocumentReference/d1", text=TEXT),
                              "MedicationStatement")
    assert any(c["code"] == "C0000039" for s in statements for c in s["medicationCodeableConcept"]["coding"])
    without = ClinicalNlp().extract(TEXT)
    assert not any(m.concept_id.startswith("umls:") for m in without)


def test_semantic_types_decide_the_category() -> None:
    assert concept_of("C1", "x", {"T047"}).category == "condition"  # type: ignore[union-attr]
    assert concept_of("C2", "x", {"T184"}).category == "symptom"  # type: ignore[union-attr]
    assert concept_of("C3", "x", {"T047", "T121"}).category == "medication"  # type: ignore[union-attr]
    assert concept_of("C4", "x", {"T029"}) is None  # a body location: not written as anything


def test_a_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    from nlp.pipeline import ClinicalNlp

    with pytest.raises(FileNotFoundError, match="DIGITALFRONT_NLP_QUICKUMLS"):
        ClinicalNlp(quickumls=str(tmp_path / "nowhere"))
