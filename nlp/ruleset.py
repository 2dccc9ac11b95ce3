"""The project rule set: concept CSVs, ConText and section rules, all plain data under nlp/rules/.

Kept separate from the pipeline so the rules can be validated, counted and
documented without building a spaCy pipeline.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

RULES_DIR = Path(__file__).parent / "rules"

# Short code-system prefixes used in the CSV files -> canonical FHIR system URIs.
SYSTEMS: dict[str, str] = {
    "sct": "http://snomed.info/sct",
    "icd10": "http://hl7.org/fhir/sid/icd-10-cm",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "loinc": "http://loinc.org",
}

CATEGORIES = ("condition", "symptom", "medication", "allergy", "procedure", "finding")


class RuleSetError(ValueError):
    """A rule file is malformed; raised at load time so bad rules never reach production."""


@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str | None = None

    def to_fhir(self) -> dict[str, str]:
        out = {"system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out


@dataclass(frozen=True)
class Synonym:
    """One surface form. ``case_sensitive`` for abbreviations (``=PE``); ``needs_allergy_context``
    for bare substances (``~eggs``) that only mean an allergy next to an allergy cue."""

    text: str
    case_sensitive: bool = False
    needs_allergy_context: bool = False


@dataclass(frozen=True)
class Concept:
    id: str
    category: str
    display: str
    codes: tuple[Coding, ...]
    synonyms: tuple[Synonym, ...]
    options: frozenset[str] = frozenset()
    source: str = ""


@dataclass
class RuleSet:
    name: str
    version: str
    concepts: dict[str, Concept]
    context: dict[str, Any]
    sections: dict[str, Any]
    files: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def _parse_codes(raw: str, display: str, where: str) -> tuple[Coding, ...]:
    out: list[Coding] = []
    for token in raw.split():
        prefix, sep, code = token.partition(":")
        if not sep or prefix not in SYSTEMS or not code:
            raise RuleSetError(f"{where}: bad code {token!r} (expected one of {sorted(SYSTEMS)}:CODE)")
        out.append(Coding(SYSTEMS[prefix], code, display))
    return tuple(out)


def _parse_synonyms(raw: str, where: str) -> tuple[Synonym, ...]:
    out: list[Synonym] = []
    for item in raw.split("|"):
        item = item.strip()
        if not item:
            continue
        cs = item.startswith("=")
        ctx = item.startswith("~")
        text = item[1:] if (cs or ctx) else item
        if not text:
            raise RuleSetError(f"{where}: empty synonym")
        out.append(Synonym(text, case_sensitive=cs, needs_allergy_context=ctx))
    if not out:
        raise RuleSetError(f"{where}: no synonyms")
    return tuple(out)


def load_concepts(path: Path) -> list[Concept]:
    concepts: list[Concept] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        expected = {"id", "category", "display", "codes", "synonyms", "options"}
        if set(reader.fieldnames or []) != expected:
            raise RuleSetError(f"{path.name}: header must be {sorted(expected)}")
        for lineno, row in enumerate(reader, start=2):
            where = f"{path.name}:{lineno}"
            cid = (row["id"] or "").strip()
            cat = (row["category"] or "").strip()
            if not cid or not cid.replace("_", "").isalnum():
                raise RuleSetError(f"{where}: bad id {cid!r}")
            if cat not in CATEGORIES:
                raise RuleSetError(f"{where}: unknown category {cat!r}")
            display = (row["display"] or "").strip()
            concepts.append(Concept(
                id=cid, category=cat, display=display,
                codes=_parse_codes(row["codes"] or "", display, where),
                synonyms=_parse_synonyms(row["synonyms"] or "", where),
                options=frozenset(o for o in (row["options"] or "").split() if o),
                source=path.name,
            ))
    return concepts


def load_ruleset(rules_dir: Path | str | None = None) -> RuleSet:
    base = Path(rules_dir) if rules_dir else RULES_DIR
    manifest = json.loads((base / "ruleset.json").read_text(encoding="utf-8"))
    concepts: dict[str, Concept] = {}
    for name in manifest["concept_files"]:
        for c in load_concepts(base / name):
            if c.id in concepts:
                raise RuleSetError(f"{name}: duplicate concept id {c.id!r}")
            concepts[c.id] = c
    context = json.loads((base / manifest["context_file"]).read_text(encoding="utf-8"))
    sections = json.loads((base / manifest["section_file"]).read_text(encoding="utf-8"))
    return RuleSet(
        name=manifest["name"], version=manifest["version"], concepts=concepts,
        context=context, sections=sections, files=list(manifest["concept_files"]),
    )


@lru_cache(maxsize=1)
def default_ruleset() -> RuleSet:
    return load_ruleset()
