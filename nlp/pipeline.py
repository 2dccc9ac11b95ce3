"""medSpaCy pipeline with the project rule set: text in, ``Mention`` objects out.

Built once per process (building takes ~1 s); ``extract`` is safe to call from
several threads because calls into the spaCy pipeline are serialised by a lock
(spaCy components are not documented as re-entrant).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from nlp.mention import Mention
from nlp.ruleset import Concept, RuleSet, default_ruleset

log = logging.getLogger(__name__)

PIPELINE_NAME = "digitalfront-nlp"
PIPELINE_VERSION = "1.0.0"

_ALLERGY_SECTIONS = {"allergies", "allergy"}
_SEP = "\u241f"  # joins concept id and synonym flags inside a TargetRule literal-free metadata key


class _PyFastNerRuleNotes(logging.Filter):
    """PyFastNER notes a rule character it does not support at INFO on the root logger each time a sentence
    rule meets it (~60 lines per extract call); the notes say nothing about the outcome, so they are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and "is not a eligible syntax" in str(record.msg))


def silence_noisy_loggers() -> None:
    """PyRuSH logs every sentence at DEBUG through loguru; keep it quiet unless asked for."""
    root = logging.getLogger()
    if not any(isinstance(f, _PyFastNerRuleNotes) for f in root.filters):
        root.addFilter(_PyFastNerRuleNotes())
    try:
        from loguru import logger as loguru_logger

        loguru_logger.disable("PyRuSH")
        loguru_logger.disable("PyFastNER")
    except ImportError:  # pragma: no cover - loguru is a medspacy dependency
        pass


def _medspacy_resource(name: str) -> Path:
    import medspacy

    return Path(medspacy.__file__).resolve().parents[1] / "resources" / "en" / name


def _family_member(mod_text: str) -> str | None:
    words = mod_text.lower().replace("'s", "").split()
    for w in reversed(words):
        if w in _RELATIVES:
            return w
    return None


_RELATIVES = {
    "mother", "mom", "father", "dad", "sister", "sisters", "brother", "brothers", "sibling", "siblings",
    "grandmother", "grandfather", "grandparents", "grandparent", "aunt", "aunts", "uncle", "uncles",
    "cousin", "cousins", "son", "sons", "daughter", "daughters", "parents", "parent", "relative",
    "relatives", "twin",
}


class ClinicalNlp:
    """The clinical NLP pipeline.

    ``tuned=False`` builds the baseline used in evaluation and benchmarks:
    medSpaCy's default ConText and section rules with the same target rules and
    no project post-processing.
    """

    def __init__(self, ruleset: RuleSet | None = None, *, tuned: bool = True, quickumls: str | None = None) -> None:
        silence_noisy_loggers()
        self.ruleset = ruleset or default_ruleset()
        self.tuned = tuned
        self.quickumls = quickumls  # a QuickUMLS index folder: UMLS concepts besides the rule set's
        self._lock = threading.Lock()
        self.nlp = self._build()

    # -- construction -------------------------------------------------------------------------------
    def _build(self) -> Any:
        import medspacy
        from medspacy.target_matcher import TargetRule
        from spacy.tokens import Span

        if not Span.has_extension("is_allergy"):
            Span.set_extension("is_allergy", default=False)
        enable = ["medspacy_tokenizer", "medspacy_pyrush", "medspacy_target_matcher"]
        nlp = medspacy.load(medspacy_enable=enable)
        matcher = nlp.get_pipe("medspacy_target_matcher")
        rules = []
        for concept in self.ruleset.concepts.values():
            label = concept.category.upper()
            for syn in concept.synonyms:
                meta = {"concept_id": concept.id, "needs_allergy_context": syn.needs_allergy_context}
                if syn.case_sensitive:
                    pattern = [{"TEXT": t} for t in syn.text.split()]
                    rules.append(TargetRule(syn.text, label, pattern=pattern, metadata=meta))
                else:
                    rules.append(TargetRule(syn.text.lower(), label, metadata=meta))
        matcher.add(rules)
        if self.quickumls:
            from nlp.quickumls import add_to

            add_to(nlp, self.quickumls)
        if self.tuned:
            self._add_tuned_context(nlp)
            self._add_tuned_sectionizer(nlp)
            self._add_postprocessor(nlp)
        else:
            nlp.add_pipe("medspacy_context")
            nlp.add_pipe("medspacy_sectionizer")
        return nlp

    def _add_tuned_context(self, nlp: Any) -> None:
        from medspacy.context import ConTextRule
        from medspacy.context.context import DEFAULT_ATTRIBUTES

        cfg = self.ruleset.context
        disabled = set(cfg.get("disable", []))
        base = [r for r in ConTextRule.from_json(str(_medspacy_resource("context_rules.json")))
                if r.literal not in disabled]
        ours = [ConTextRule.from_dict(d) for d in cfg["context_rules"]]
        # medSpaCy 1.3.1 stores the global terminating_types as one-shot iterators, so only the first
        # rule of each category would get them; attach them to every rule here instead.
        terminating = {k.upper(): {t.upper() for t in v} for k, v in (cfg.get("terminating_types") or {}).items()}
        rules = base + ours
        for rule in rules:
            rule.terminated_by.update(terminating.get(rule.category.upper(), set()))
        attrs = {**DEFAULT_ATTRIBUTES, "ALLERGY": {"is_allergy": True}}
        context = nlp.add_pipe("medspacy_context", config={"rules": None, "span_attrs": attrs})
        context.add(rules)

    def _add_tuned_sectionizer(self, nlp: Any) -> None:
        from medspacy.section_detection import SectionRule

        cfg = self.ruleset.sections
        sectionizer = nlp.add_pipe("medspacy_sectionizer", config={
            "rules": "default", "span_attrs": cfg["section_attributes"],
        })
        sectionizer.add([SectionRule(r["literal"], r["category"]) for r in cfg["section_rules"]])

    def _add_postprocessor(self, nlp: Any) -> None:
        from nlp.postprocess import postprocessing_rules

        post = nlp.add_pipe("medspacy_postprocessor")
        post.add(postprocessing_rules())

    # -- extraction ---------------------------------------------------------------------------------
    def extract(self, text: str) -> list[Mention]:
        if not isinstance(text, str):
            raise TypeError("text must be str")
        with self._lock:
            doc = self.nlp(text)
            return self.mentions_from_doc(doc)

    def pipe(self, texts: Iterable[str], batch_size: int = 16) -> Iterator[list[Mention]]:
        """Stream documents through ``nlp.pipe`` (one process) for throughput."""
        with self._lock:
            for doc in self.nlp.pipe(texts, batch_size=batch_size):
                yield self.mentions_from_doc(doc)

    def mentions_from_doc(self, doc: Any) -> list[Mention]:
        raw: list[tuple[Any, Concept, bool]] = []
        for ent in doc.ents:
            rule = ent._.target_rule
            meta = (rule.metadata or {}) if rule is not None else {}
            concept = self.ruleset.concepts.get(meta.get("concept_id", ""))
            if concept is None and rule is None and self.quickumls and ent.has_extension("semtypes"):
                from nlp.quickumls import concept_of

                concept = concept_of(ent.label_, ent.text, set(ent._.semtypes or ()))
            if concept is None:
                continue
            raw.append((ent, concept, bool(meta.get("needs_allergy_context"))))
        mentions: list[Mention] = []
        for ent, concept, needs_allergy in raw:
            m = self._mention(ent, concept, needs_allergy)
            if m is not None:
                mentions.append(m)
        return self._attach_reactions(mentions) if self.tuned else mentions

    def _mention(self, ent: Any, concept: Concept, needs_allergy: bool) -> Mention | None:
        section = ent._.section_category
        flags = {
            "negated": bool(ent._.is_negated), "historical": bool(ent._.is_historical),
            "hypothetical": bool(ent._.is_hypothetical), "family": bool(ent._.is_family),
            "uncertain": bool(ent._.is_uncertain),
        }
        doc = ent.doc
        modifiers = tuple(f"{m.category}:{doc[m.modifier_span[0]:m.modifier_span[1]].text}"
                          for m in ent._.modifiers)
        category = concept.category
        family_member = None
        if self.tuned:
            allergy_ctx = bool(ent._.is_allergy) or section in _ALLERGY_SECTIONS
            if needs_allergy and not allergy_ctx:
                return None
            if allergy_ctx and category == "medication":
                category = "allergy"
            if "no_context" in concept.options:
                flags = dict.fromkeys(flags, False)
            if allergy_ctx and category == "allergy":
                flags["hypothetical"] = False
            if flags["family"]:
                for m in ent._.modifiers:
                    if m.category == "FAMILY":
                        family_member = _family_member(doc[m.modifier_span[0]:m.modifier_span[1]].text) or family_member
        sent = ent.sent
        return Mention(
            concept_id=concept.id, concept=concept.display, category=category, codes=concept.codes,
            text=ent.text, start=ent.start_char, end=ent.end_char,
            sentence_start=sent.start_char, sentence_end=sent.end_char, section=section,
            family_member=family_member, modifiers=modifiers, negated=flags["negated"],
            historical=flags["historical"], hypothetical=flags["hypothetical"], family=flags["family"],
            uncertain=flags["uncertain"],
        )

    @staticmethod
    def _attach_reactions(mentions: list[Mention]) -> list[Mention]:
        """Symptoms named next to an allergy ("penicillin (hives)") describe the reaction, not the patient."""
        out: list[Mention] = []
        allergies = [m for m in mentions if m.category == "allergy"]
        for m in mentions:
            if m.category in ("symptom", "condition"):
                owner = next((a for a in reversed(allergies)
                              if a.sentence_start == m.sentence_start and a.end <= m.start
                              and a.section == m.section and a.section in _ALLERGY_SECTIONS | {None}
                              and m.start - a.end <= 40), None)
                if owner is not None and (owner.section in _ALLERGY_SECTIONS or _is_allergy_sentence(owner)):
                    idx = out.index(owner)
                    out[idx] = _replace(owner, reactions=owner.reactions + (m.concept_id,))
                    allergies = [out[idx] if a is owner else a for a in allergies]
                    continue
            out.append(m)
        return out


def _is_allergy_sentence(m: Mention) -> bool:
    return any(mod.startswith("ALLERGY:") for mod in m.modifiers)


def _replace(m: Mention, **changes: Any) -> Mention:
    from dataclasses import replace

    return replace(m, **changes)


_shared: ClinicalNlp | None = None
_shared_lock = threading.Lock()


def shared_pipeline() -> ClinicalNlp:
    """One pipeline per process, built on first use (the web plugin, CLI and CDS services share it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from nlp.quickumls import configured_index

            _shared = ClinicalNlp(quickumls=configured_index())
        return _shared


def pipeline_label() -> str:
    try:
        ms_version = resources.files("medspacy").joinpath("VERSION").read_text().strip()
    except (FileNotFoundError, OSError, ModuleNotFoundError):  # pragma: no cover
        ms_version = "unknown"
    from nlp.quickumls import configured_index

    index = configured_index()
    umls = f"; QuickUMLS index {Path(index).name}" if index else ""
    return f"{PIPELINE_NAME}/{PIPELINE_VERSION} (medspacy {ms_version}{umls})"
