"""A small, fast ER7 (pipe-and-hat) tree used on the ingest hot path.

hl7apy builds a fully typed tree and costs ~30 ms for an ORU with 20 OBX on
this machine (see docs/hl7v2.md); the listener has to sustain hundreds of
messages/s, so mappers read this positional tree instead.  hl7apy stays
available through ``interfaces.parsing`` for version/structure checks.
Indexing follows the HL7 spec: fields, repetitions, components and
subcomponents are 1-based and MSH-1 is the field separator itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from fhir_server.validation.primitives import CONTROL_CHARS

SEGMENT_SEPARATORS = ("\r\n", "\n", "\r")


class Er7Error(ValueError):
    """The bytes are not an HL7 v2 message at all (answered with AR)."""


@dataclass(frozen=True)
class Encoding:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def msh2(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


def unescape(text: str, enc: Encoding) -> str:
    """Resolve \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ and \\Xhh\\; unknown escapes are kept verbatim.

    A ``\\Xhh\\`` that stands for a control character FHIR strings may not hold becomes a space, as the raw
    ones do in ``parse_er7``."""
    esc = enc.escape
    if not esc or esc not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != esc:
            out.append(ch)
            i += 1
            continue
        end = text.find(esc, i + 1)
        if end < 0:
            out.append(text[i:])
            break
        seq = text[i + 1 : end]
        rep = {
            "F": enc.field,
            "S": enc.component,
            "T": enc.subcomponent,
            "R": enc.repetition,
            "E": esc,
            ".br": "\n",
            "P": enc.truncation,
        }.get(seq)
        if rep is None and seq[:1] == "X" and len(seq) > 1:
            try:
                rep = _printable(bytes.fromhex(seq[1:]).decode("latin-1"))
            except ValueError:
                rep = None
        if rep is None and seq in ("H", "N"):
            rep = ""  # highlighting on/off: formatting only
        out.append(text[i : end + 1] if rep is None else rep)
        i = end + 1
    return "".join(out)


def _printable(text: str) -> str:
    """Control characters FHIR strings may not hold (below U+0020 but tab, CR, LF) as spaces: real feeds carry
    stray form feeds and the like in report text, and the FHIR server would refuse the whole message for one
    of them (docs/hl7v2.md). One search per message when there are none."""
    return CONTROL_CHARS.sub(" ", text) if CONTROL_CHARS.search(text) is not None else text


# HL7's explicit null: "delete this value". Read as no value: a FHIR write replaces the whole resource, so an
# absent element is the deletion. (Read from the raw text: an escaped \"\" would be data, not this.)
NULL = '""'


@dataclass
class Segment:
    """One segment; ``fields[0]`` is the segment id, MSH is shifted so MSH-1 is the separator."""

    name: str
    fields: list[str]
    enc: Encoding = field(default_factory=Encoding)

    def raw(self, idx: int) -> str:
        return self.fields[idx] if 0 <= idx < len(self.fields) else ""

    def reps(self, idx: int) -> list[str]:
        """The repetitions of a field (raw, escaped text); ``[]`` if empty."""
        raw = self.raw(idx)
        if not raw or self.name == "MSH" and idx in (1, 2):
            return [raw] if raw else []
        return [r for r in raw.split(self.enc.repetition)]

    def get(self, idx: int, comp: int = 1, sub: int = 1, rep: int = 1) -> str:
        """Unescaped value of field[rep].component.subcomponent, ``""`` when absent."""
        reps = self.reps(idx)
        if rep > len(reps):
            return ""
        value = reps[rep - 1]
        if self.name == "MSH" and idx in (1, 2):
            return value
        return _component(value.split(self.enc.component), comp, sub, self.enc)

    def field_value(self, idx: int) -> Field | None:
        reps = self.fields_of(idx)
        return reps[0] if reps else None

    def fields_of(self, idx: int) -> list[Field]:
        return [Field(r, self.enc) for r in self.reps(idx) if r and r != NULL]


def _component(comps: list[str], comp: int, sub: int, enc: Encoding) -> str:
    """Unescaped subcomponent ``sub`` of component ``comp`` of a field already split into components."""
    if comp > len(comps):
        return ""
    subs = comps[comp - 1].split(enc.subcomponent)
    if sub > len(subs) or subs[sub - 1] == NULL:
        return ""
    return unescape(subs[sub - 1], enc).strip()


@dataclass
class Field:
    """One field repetition, addressed by component/subcomponent."""

    raw: str
    enc: Encoding

    @cached_property
    def _comps(self) -> list[str]:
        return self.raw.split(self.enc.component)  # split once: mappers read many components of a field

    def c(self, comp: int, sub: int = 1) -> str:
        return _component(self._comps, comp, sub, self.enc)

    def comp_field(self, comp: int) -> Field:
        """A component viewed as a field whose parts are its subcomponents (e.g. CX-4 HD)."""
        comps = self.raw.split(self.enc.component)
        raw = comps[comp - 1] if comp <= len(comps) else ""
        return Field(raw.replace(self.enc.subcomponent, self.enc.component), self.enc)

    @property
    def text(self) -> str:
        """The whole repetition unescaped (for ST/TX/FT, where ^ has no meaning)."""
        return unescape(self.raw, self.enc)


@dataclass
class Er7Message:
    segments: list[Segment]
    enc: Encoding

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        for s in self.segments:
            if s.name == name:
                return s
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]


def split_segments(text: str) -> list[str]:
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    return [s for s in (seg.strip("\x00") for seg in text.split("\r")) if s.strip()]


def parse_er7(text: str) -> Er7Message:
    """Tokenize one message; tolerant of missing trailing fields, Z-segments, LF separators."""
    lines = split_segments(_printable(text.lstrip("\ufeff")))
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise Er7Error("message does not start with an MSH segment")
    head = lines[0]
    fs = head[3]
    msh2_end = head.find(fs, 4)
    msh2 = head[4:msh2_end] if msh2_end > 0 else head[4:]
    if len(msh2) < 3 or fs.isalnum():
        raise Er7Error("MSH-1/MSH-2 encoding characters are invalid")
    enc = Encoding(
        field=fs,
        component=msh2[0],
        repetition=msh2[1],
        escape=msh2[2] if len(msh2) > 2 else "",
        subcomponent=msh2[3] if len(msh2) > 3 else "&",
        truncation=msh2[4] if len(msh2) > 4 else "",
    )
    segments: list[Segment] = []
    for line in lines:
        parts = line.split(fs)
        name = parts[0].strip()
        if len(name) != 3 or not name.isalnum():
            raise Er7Error(f"invalid segment id {name[:10]!r}")
        if name == "MSH":
            parts = ["MSH", fs] + parts[1:]
        segments.append(Segment(name, parts, enc))
    return Er7Message(segments, enc)
