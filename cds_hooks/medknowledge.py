"""The project's medication knowledge (data/medication_knowledge.json): ingredients, classes, DDIs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from cds_hooks.fhirdata import RXNORM, SNOMED, codings

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Interaction:
    id: str
    a: tuple[str, ...]
    b: tuple[str, ...]
    severity: str
    effect: str
    management: str
    sources: tuple[JsonDict, ...]
    alternative_for: str | None


class MedKnowledge:
    def __init__(self, raw: JsonDict) -> None:
        self.raw = raw
        self.ingredients: dict[str, JsonDict] = raw["ingredients"]
        self.classes: dict[str, JsonDict] = raw["classes"]
        self.products: dict[str, list[str]] = raw["products"]
        self.by_rxcui = {v["rxcui"]: k for k, v in self.ingredients.items() if v.get("rxcui")}
        names: list[tuple[str, str]] = []
        for name, info in self.ingredients.items():
            names.append((name, name))
            names.extend((syn, name) for syn in info.get("synonyms", []))
        names.sort(key=lambda p: -len(p[0]))  # longest first: "penicillin v potassium" before "penicillin v"
        self._name_res = [(re.compile(r"\b" + re.escape(n) + r"\b", re.I), ing) for n, ing in names]
        sources = raw["sources"]
        self.interactions = [
            Interaction(i["id"], tuple(i["a"]), tuple(i["b"]), i["severity"], i["effect"], i["management"],
                        tuple(sources[s] for s in i["sources"]), i.get("alternative_for"))
            for i in raw["interactions"]]

    def classes_of(self, ingredient: str) -> list[str]:
        return list(self.ingredients.get(ingredient, {}).get("classes", []))

    def ingredients_in_text(self, text: str) -> set[str]:
        found: set[str] = set()
        for rx, ing in self._name_res:
            if rx.search(text):
                found.add(ing)
        return found

    def ingredients_of(self, concept: Any) -> set[str]:
        """Ingredients of a medication CodeableConcept: RxNorm product/ingredient codes, else names."""
        found: set[str] = set()
        for c in codings(concept):
            if c.get("system") == RXNORM and c.get("code"):
                code = str(c["code"])
                found.update(self.products.get(code, []))
                if code in self.by_rxcui:
                    found.add(self.by_rxcui[code])
        if not found and isinstance(concept, dict):
            texts = [concept.get("text") or ""] + [c.get("display") or "" for c in codings(concept)]
            for t in texts:
                found |= self.ingredients_in_text(str(t))
        return found

    def allergy_targets(self, code: Any) -> tuple[set[str], set[str]]:
        """(ingredients, classes) an AllergyIntolerance.code points at."""
        ings = self.ingredients_of(code)
        classes: set[str] = set()
        for c in codings(code):
            if c.get("system") == SNOMED and str(c.get("code")) in self.raw["allergy_snomed"]:
                classes.add(self.raw["allergy_snomed"][str(c["code"])]["class"])
        texts = [str((code or {}).get("text") or "")] + [str(c.get("display") or "") for c in codings(code)]
        text = " ".join(texts)
        for kw, target in self.raw["allergy_keywords"].items():
            if re.search(r"\b" + re.escape(kw), text, re.I):
                if "class" in target:
                    classes.add(target["class"])
                if "ingredient" in target:
                    ings.add(target["ingredient"])
        return ings, classes

    def matches(self, spec: tuple[str, ...], ingredient: str) -> bool:
        return any(s == ingredient or (s.startswith("class:") and s[6:] in self.classes_of(ingredient))
                   for s in spec)

    def interactions_between(self, x: str, y: str) -> list[tuple[Interaction, str]]:
        """Interactions between two ingredients; the str says which side x is on ('a' or 'b')."""
        out = []
        for i in self.interactions:
            if self.matches(i.a, x) and self.matches(i.b, y):
                out.append((i, "a"))
            elif self.matches(i.b, x) and self.matches(i.a, y):
                out.append((i, "b"))
        return out


@lru_cache(maxsize=1)
def knowledge() -> MedKnowledge:
    text = resources.files("cds_hooks").joinpath("data/medication_knowledge.json").read_text("utf-8")
    return MedKnowledge(json.loads(text))
