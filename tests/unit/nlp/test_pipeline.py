"""ConText tuning, each change backed by sentences; and the public Mention API."""

from __future__ import annotations

import threading

import pytest


def flags(nlp, text, concept):
    ms = [m for m in nlp.extract(text) if m.concept_id == concept]
    assert ms, f"{concept} not found in {text!r}"
    m = ms[0]
    return "".join(f for f, on in (("n", m.negated), ("h", m.historical), ("y", m.hypothetical),
                                   ("f", m.family), ("u", m.uncertain)) if on)


@pytest.mark.parametrize("text,concept,expected", [
    # pseudo-negations
    ("No increase in lower extremity edema.", "edema", ""),
    ("No significant change in his shortness of breath.", "dyspnea", ""),
    ("No relief from acetaminophen.", "acetaminophen", ""),
    # negation scope across conjunctions and terminators
    ("No fever, chills, or cough.", "cough", "n"),
    ("Denies chest pain and endorses dyspnea on exertion.", "dyspnea", ""),
    ("Negative for headache, positive for neck pain.", "neck_pain", ""),
    ("No nausea, however she reports vomiting twice today.", "vomiting", ""),
    ("He does not have diabetes.", "diabetes", "n"),
    # historical
    ("Pneumonia treated last month, now resolved.", "pneumonia", "h"),
    ("Status post appendectomy in 2010.", "appendectomy", "h"),
    ("Lisinopril was stopped due to cough.", "cough", ""),
    ("No history of stroke or TIA.", "stroke", "n"),
    ("Hearing loss in the right ear.", "hearing_loss", ""),
    # hypothetical
    ("Return if fever or worsening shortness of breath develops.", "fever", "y"),
    ("Will start atorvastatin 40 mg nightly.", "atorvastatin", "y"),
    ("DVT prophylaxis with enoxaparin.", "dvt", "y"),
    ("Risk of stroke discussed given atrial fibrillation.", "atrial_fibrillation", ""),
    # uncertain
    ("Cannot rule out pulmonary embolism.", "pulmonary_embolism", "u"),
    ("Cellulitis versus contact dermatitis.", "cellulitis", "u"),
    # family, incl. section based; family is never historical for the patient
    ("Family History: Father with coronary artery disease.", "coronary_artery_disease", "f"),
    ("Family history of colon cancer in his father.", "colon_cancer", "f"),
    ("Her mother had breast cancer at age 52.", "breast_cancer", "f"),
    ("No family history of diabetes.", "diabetes", "nf"),
    # section based history
    ("Past Medical History: Hypertension, type 2 diabetes.", "hypertension", "h"),
])
def test_context(nlp, text, concept, expected):
    assert flags(nlp, text, concept) == expected


def test_mention_offsets_point_at_evidence(nlp):
    text = "HPI: Patient denies chest pain.\nAllergies: penicillin (hives)."
    ms = nlp.extract(text)
    for m in ms:
        assert text[m.start:m.end] == m.text
        assert m.sentence_start <= m.start < m.end <= m.sentence_end
    allergy = next(m for m in ms if m.concept_id == "penicillin")
    assert allergy.category == "allergy" and allergy.section == "allergies" and allergy.reactions == ("rash",)
    assert not any(m.concept_id == "rash" for m in ms)  # hives is the reaction, not a patient problem
    assert any(c.system == "http://www.nlm.nih.gov/research/umls/rxnorm" and c.code == "70618"
               for c in allergy.codes)


def test_bare_substance_needs_allergy_context(nlp):
    assert [m.concept_id for m in nlp.extract("He eats eggs daily.")] == []
    assert [m.concept_id for m in nlp.extract("Allergic to eggs.")] == ["egg_allergy"]


def test_section_header_is_not_a_finding(nlp):
    ids = [m.concept_id for m in nlp.extract("PE:\nLungs clear. Rule out PE.")]
    assert ids == ["pulmonary_embolism"]


def test_baseline_differs_from_tuned():
    from nlp.pipeline import ClinicalNlp

    base = ClinicalNlp(tuned=False)
    ms = base.extract("No increase in lower extremity edema.")
    assert ms[0].negated  # medSpaCy's default rules take "no increase" as a negation


def test_extract_does_not_flood_the_log(nlp, caplog):
    """PyFastNER notes a rule character it cannot use ("... is not a eligible syntax") at INFO on the root
    logger for each sentence end it tries (~60 lines per call): those notes are dropped, nothing else."""
    import logging

    caplog.set_level(logging.INFO)
    assert nlp.extract("Warm-up: no acute distress. Denies chest pain.") is not None
    logging.getLogger().info("a root INFO line of ours")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "eligible syntax" in m]
    assert "a root INFO line of ours" in messages


def test_thread_safe_extract(nlp):
    text = "Denies chest pain. History of hypertension on lisinopril."
    expected = [m.to_dict() for m in nlp.extract(text)]
    results: list[list[dict]] = []

    def run() -> None:
        for _ in range(5):
            results.append([m.to_dict() for m in nlp.extract(text)])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(r == expected for r in results)


def test_rejects_non_text(nlp):
    with pytest.raises(TypeError):
        nlp.extract(b"bytes")  # type: ignore[arg-type]


def test_pyrush_debug_logging_is_silenced(nlp, capfd):
    nlp.extract("Chest pain. Shortness of breath.")
    err = capfd.readouterr().err
    assert "DEBUG" not in err
