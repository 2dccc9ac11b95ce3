"""Evaluation of the pipeline on the project's annotated corpus (nlp/eval/corpus_*.tsv).

Concept detection is scored per sentence by concept id (one-to-one matching);
each assertion attribute is scored on the concept matches, so an attribute
score answers "when we find the right concept, do we get its context right".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nlp.mention import Mention

EVAL_DIR = Path(__file__).parent
FLAGS = {"n": "negated", "h": "historical", "y": "hypothetical", "f": "family", "u": "uncertain"}
ATTRIBUTES = ("negated", "historical", "hypothetical", "family", "uncertain")
RECORDED_SCORES = EVAL_DIR / "recorded_scores.json"


@dataclass(frozen=True)
class GoldMention:
    concept_id: str
    attrs: frozenset[str]


@dataclass(frozen=True)
class Example:
    text: str
    gold: tuple[GoldMention, ...]
    source: str


def parse_line(line: str, source: str) -> Example:
    text, sep, labels = line.rstrip("\n").partition("\t")
    if not sep or not text.strip():
        raise ValueError(f"{source}: expected 'sentence<TAB>labels'")
    gold: list[GoldMention] = []
    if labels.strip() != "-":
        for item in labels.split(";"):
            cid, _, flags = item.strip().partition("/")
            unknown = set(flags) - set(FLAGS)
            if not cid or unknown:
                raise ValueError(f"{source}: bad label {item!r}")
            gold.append(GoldMention(cid, frozenset(FLAGS[f] for f in flags)))
    return Example(text.strip(), tuple(gold), source)


def load_corpus(eval_dir: Path = EVAL_DIR) -> list[Example]:
    out: list[Example] = []
    for path in sorted(eval_dir.glob("corpus_*.tsv")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip() and not line.startswith("#"):
                out.append(parse_line(line, f"{path.name}:{n}"))
    return out


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def prf(self) -> dict[str, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
                "tp": self.tp, "fp": self.fp, "fn": self.fn}


@dataclass
class Report:
    concept: Counts = field(default_factory=Counts)
    attrs: dict[str, Counts] = field(default_factory=lambda: {a: Counts() for a in ATTRIBUTES})
    errors: list[str] = field(default_factory=list)

    def scores(self) -> dict[str, dict[str, float]]:
        out = {"concept": self.concept.prf()}
        out.update({a: c.prf() for a, c in self.attrs.items()})
        return out


def _attrs(m: Mention) -> frozenset[str]:
    return frozenset(a for a in ATTRIBUTES if getattr(m, a))


def score(examples: list[Example], predictions: list[list[Mention]]) -> Report:
    rep = Report()
    for ex, preds in zip(examples, predictions, strict=True):
        pred_pool = list(preds)
        matched: list[tuple[GoldMention, Mention]] = []
        for g in ex.gold:
            # prefer the prediction that also agrees on attributes, so duplicates pair sensibly
            cands = [p for p in pred_pool if p.concept_id == g.concept_id]
            if not cands:
                rep.concept.fn += 1
                rep.errors.append(f"MISS {g.concept_id} | {ex.text}")
                continue
            best = max(cands, key=lambda p: len(_attrs(p) & g.attrs) - len(_attrs(p) ^ g.attrs))
            pred_pool.remove(best)
            matched.append((g, best))
            rep.concept.tp += 1
        for p in pred_pool:
            rep.concept.fp += 1
            rep.errors.append(f"EXTRA {p.concept_id} ({p.text}) | {ex.text}")
        for g, p in matched:
            pa = _attrs(p)
            for a in ATTRIBUTES:
                c = rep.attrs[a]
                if a in g.attrs and a in pa:
                    c.tp += 1
                elif a in pa:
                    c.fp += 1
                    rep.errors.append(f"FP-{a} {g.concept_id} | {ex.text}")
                elif a in g.attrs:
                    c.fn += 1
                    rep.errors.append(f"FN-{a} {g.concept_id} | {ex.text}")
    return rep


def evaluate(tuned: bool = True) -> Report:
    from nlp.pipeline import ClinicalNlp

    examples = load_corpus()
    nlp = ClinicalNlp(tuned=tuned)
    return score(examples, list(nlp.pipe(ex.text for ex in examples)))


def recorded_scores() -> dict[str, dict[str, float]]:
    return json.loads(RECORDED_SCORES.read_text(encoding="utf-8"))


def format_table(ours: dict[str, dict[str, float]], base: dict[str, dict[str, float]]) -> str:
    lines = [f"{'attribute':<13} {'baseline P':>10} {'R':>6} {'F1':>6}   {'ours P':>7} {'R':>6} {'F1':>6}   {'dF1':>6}"]
    for key in ("concept", *ATTRIBUTES):
        b, o = base[key], ours[key]
        lines.append(f"{key:<13} {b['precision']:>10.3f} {b['recall']:>6.3f} {b['f1']:>6.3f}   "
                     f"{o['precision']:>7.3f} {o['recall']:>6.3f} {o['f1']:>6.3f}   {o['f1'] - b['f1']:>+6.3f}")
    return "\n".join(lines)
