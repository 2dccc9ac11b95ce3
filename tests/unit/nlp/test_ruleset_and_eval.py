"""Rule files are valid data, the corpus is well-formed, and scores never drop below the recorded ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlp.eval import ATTRIBUTES, evaluate, load_corpus, recorded_scores
from nlp.ruleset import CATEGORIES, RuleSetError, load_concepts, load_ruleset


def test_ruleset_has_at_least_300_coded_concepts():
    rs = load_ruleset()
    assert len(rs.concepts) >= 300
    coded = [c for c in rs.concepts.values() if c.codes]
    assert len(coded) >= 300
    assert {c.category for c in rs.concepts.values()} == set(CATEGORIES)
    for c in rs.concepts.values():
        if c.category == "medication" and c.codes:
            assert any("rxnorm" in x.system for x in c.codes), c.id
        if c.category == "condition":
            assert any("snomed" in x.system for x in c.codes), c.id


def test_synthea_conditions_are_covered():
    """Every condition code used by the Synthea corpus that we list as a concept resolves by SNOMED code."""
    rs = load_ruleset()
    sct = {x.code for c in rs.concepts.values() for x in c.codes if x.system == "http://snomed.info/sct"}
    for code in ("38341003", "44054006", "55822004", "49436004", "53741008", "88805009", "233604007"):
        assert code in sct


def test_bad_rule_file_is_rejected(tmp_path: Path):
    p = tmp_path / "c.csv"
    p.write_text("id,category,display,codes,synonyms,options\nx,disease,X,sct:1,x,\n")
    with pytest.raises(RuleSetError, match="unknown category"):
        load_concepts(p)
    p.write_text("id,category,display,codes,synonyms,options\nx,condition,X,snomed:1,x,\n")
    with pytest.raises(RuleSetError, match="bad code"):
        load_concepts(p)


def test_corpus_size_and_labels_are_known_concepts():
    corpus = load_corpus()
    assert len(corpus) >= 300
    concepts = load_ruleset().concepts
    for ex in corpus:
        for g in ex.gold:
            assert g.concept_id in concepts, f"{ex.source}: {g.concept_id}"


@pytest.fixture(scope="module")
def scores():
    return evaluate(tuned=True).scores(), evaluate(tuned=False).scores()


def test_scores_not_below_recorded(scores):
    ours, _ = scores
    recorded = recorded_scores()["ours"]
    for key in ("concept", *ATTRIBUTES):
        for metric in ("precision", "recall", "f1"):
            assert ours[key][metric] >= recorded[key][metric] - 1e-9, (key, metric)


def test_tuned_beats_medspacy_defaults(scores):
    ours, base = scores
    for key in ("negated", "historical", "hypothetical", "uncertain"):
        assert ours[key]["f1"] > base[key]["f1"], key
