"""medSpaCy postprocessing rules that encode the project's assertion conventions.

Conventions (also used to annotate nlp/eval/corpus.tsv):
- a family-history mention is not *historical* for the patient;
- a negated mention is not *historical* ("PMH: no diabetes" denies diabetes, it is not past diabetes);
- a target inside a section title ("PE:", "Allergies:") is a header word, not a finding.
"""

from __future__ import annotations

from typing import Any

from medspacy.postprocess import PostprocessingPattern, PostprocessingRule, postprocessing_functions


def _in_section_title(ent: Any) -> bool:
    title = ent._.section_title
    return title is not None and title.start_char <= ent.start_char and ent.end_char <= title.end_char


def _clear_historical(ent: Any, i: int, *_: Any) -> None:
    ent._.is_historical = False


def postprocessing_rules() -> list[PostprocessingRule]:
    return [
        PostprocessingRule(
            patterns=[PostprocessingPattern(_in_section_title)],
            action=postprocessing_functions.remove_ent,
            name="drop-section-title-targets",
            description="'PE:' is the physical exam header, not pulmonary embolism.",
        ),
        PostprocessingRule(
            patterns=[PostprocessingPattern(postprocessing_functions.is_family)],
            action=_clear_historical,
            name="family-not-historical",
        ),
        PostprocessingRule(
            patterns=[PostprocessingPattern(postprocessing_functions.is_negated)],
            action=_clear_historical,
            name="negated-not-historical",
        ),
    ]
