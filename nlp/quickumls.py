"""Optional UMLS concept matching with QuickUMLS (medSpaCy's ``medspacy_quickumls``), for sites with UMLS.

Off unless a QuickUMLS index is configured (``DIGITALFRONT_NLP_QUICKUMLS``: the folder QuickUMLS's installer
built from a site's licensed UMLS release). The rule set stays the default; QuickUMLS adds the UMLS concepts
the rules do not know, each coded with its CUI and given a category from its UMLS semantic types.

QuickUMLS reads NLTK's English stop-word corpus and downloads it when missing; nothing may be downloaded at
run time here, so the corpus is written from spaCy's own English stop-word list (installed with spaCy) into a
local NLTK data folder before the component is built.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nlp.ruleset import Coding, Concept

ENV = "DIGITALFRONT_NLP_QUICKUMLS"
UMLS_SYSTEM = "http://www.nlm.nih.gov/research/umls"
# UMLS semantic types -> the pipeline's categories (the ones our FHIR mapping writes); others are left out
SEMTYPE_CATEGORY = {
    **dict.fromkeys(("T019", "T020", "T037", "T046", "T047", "T048", "T049", "T190", "T191"), "condition"),
    "T184": "symptom", "T033": "finding",
    **dict.fromkeys(("T121", "T195", "T200"), "medication"),
    **dict.fromkeys(("T060", "T061"), "procedure"),
}
# when a concept has several, the most specific reading wins
_PRECEDENCE = ("medication", "procedure", "condition", "symptom", "finding")


def configured_index() -> str | None:
    """The QuickUMLS index folder from the environment, or None (QuickUMLS off)."""
    path = os.environ.get(ENV, "").strip()
    return path or None


def ensure_stopwords(folder: Path | None = None) -> Path:
    """An NLTK data folder holding ``corpora/stopwords/english`` (spaCy's list), on ``nltk.data.path``."""
    import nltk
    from spacy.lang.en.stop_words import STOP_WORDS

    root = folder or Path(tempfile.gettempdir()) / "digitalfront-nltk-data"
    target = root / "corpora" / "stopwords" / "english"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("\n".join(sorted(STOP_WORDS)) + "\n", encoding="utf-8")
        tmp.replace(target)  # atomic: processes starting together see a whole file or none
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root


def add_to(nlp: object, index: str) -> None:
    """Add the QuickUMLS matcher to a medSpaCy pipeline (after the TargetMatcher, before ConText)."""
    if not Path(index).is_dir():
        raise FileNotFoundError(f"QuickUMLS index not found: {index} (set {ENV} to the folder QuickUMLS built)")
    ensure_stopwords()
    nlp.add_pipe("medspacy_quickumls", config={"quickumls_fp": index})  # type: ignore[attr-defined]


def concept_of(cui: str, text: str, semtypes: set[str]) -> Concept | None:
    """A pipeline Concept for a QuickUMLS match, or None when none of its semantic types is mapped."""
    categories = {SEMTYPE_CATEGORY[t] for t in semtypes if t in SEMTYPE_CATEGORY}
    if not categories:
        return None
    category = next(c for c in _PRECEDENCE if c in categories)
    return Concept(id=f"umls:{cui}", category=category, display=text, codes=(Coding(UMLS_SYSTEM, cui, text),),
                   synonyms=(), source="QuickUMLS")
