"""The pipeline's output unit: one concept mention with its assertion attributes and evidence span."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nlp.ruleset import Coding


@dataclass(frozen=True)
class Mention:
    """A concept found in a note.

    ``start``/``end`` are character offsets into the text given to ``extract``
    (the evidence span); ``sentence_start``/``sentence_end`` bound its sentence.
    ``category`` is the *effective* category: a medication named under an
    allergy cue becomes ``allergy``.
    """

    concept_id: str
    concept: str
    category: str
    codes: tuple[Coding, ...]
    text: str
    start: int
    end: int
    sentence_start: int
    sentence_end: int
    section: str | None = None
    negated: bool = False
    historical: bool = False
    hypothetical: bool = False
    family: bool = False
    uncertain: bool = False
    family_member: str | None = None
    modifiers: tuple[str, ...] = ()
    reactions: tuple[str, ...] = field(default=())

    @property
    def asserted(self) -> bool:
        """True when the note states the concept applies to the patient now or in the past."""
        return not (self.negated or self.hypothetical or self.family)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["codes"] = [c.to_fhir() for c in self.codes]
        d["modifiers"] = list(self.modifiers)
        d["reactions"] = list(self.reactions)
        return d
