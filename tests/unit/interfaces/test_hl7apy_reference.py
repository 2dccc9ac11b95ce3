"""hl7apy as the reference for our ER7 tokenizer, and as the optional validating parser (``hl7_parser=hl7apy``)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import InvalidName
from hl7apy.parser import parse_segment

from fhir_server.storage.engine import make_engine
from interfaces.er7 import parse_er7
from interfaces.parsing import SUPPORTED_VERSIONS, hl7apy_version
from interfaces.pipeline import Hl7Pipeline
from interfaces.store import MessageStore
from tests.unit.interfaces.hl7_testkit import RecordingWriter


def _same_or_known_hl7apy_difference(theirs: str, ours: str, component: str) -> bool:
    """hl7apy re-escapes escape sequences on output (``\\.br\\`` as ``\\E\\.br\\E\\``) and, past the components
    its version defines for a datatype, drops empty components (moving later ones left); anything else is a
    disagreement on what the field holds."""
    if theirs == ours or theirs == ours.replace("\\.br\\", "\\E\\.br\\E\\"):
        return True
    return [c for c in theirs.split(component) if c] == [c for c in ours.split(component) if c]


def test_our_fields_and_repetitions_are_hl7apys_on_the_ig_samples(samples: dict[str, str]) -> None:
    compared = differing = 0
    for structure, text in samples.items():
        ours = parse_er7(text)
        enc = ours.enc
        chars = {"FIELD": enc.field, "COMPONENT": enc.component, "REPETITION": enc.repetition,
                 "ESCAPE": enc.escape, "SUBCOMPONENT": enc.subcomponent, "GROUP": "\r", "SEGMENT": "\r"}
        version = hl7apy_version(ours.msh.get(12))
        assert version is not None
        for seg in ours.segments[1:]:
            try:
                theirs = parse_segment(enc.field.join(seg.fields), version=version, encoding_chars=chars,
                                       validation_level=VALIDATION_LEVEL.TOLERANT)
            except InvalidName:
                continue  # a segment this version does not define (PRT in 2.5.1): hl7apy has no fields for it
            reps: dict[int, list[str]] = defaultdict(list)
            for field in theirs.children:
                if field.name is not None:  # (fields past the segment's definition have none)
                    reps[int(field.name.rsplit("_", 1)[1])].append(field.to_er7(encoding_chars=chars))
            for idx, their_reps in reps.items():
                our_reps = [r for r in seg.reps(idx) if r]
                compared += 1
                assert len(their_reps) == len(our_reps), (structure, seg.name, idx, their_reps, our_reps)
                for t, o in zip(their_reps, our_reps, strict=True):
                    assert _same_or_known_hl7apy_difference(t, o, enc.component), (structure, seg.name, idx, t, o)
                differing += their_reps != our_reps
    assert compared > 600 and differing < compared / 20  # the samples' ~650 fields, nearly all byte for byte


def test_every_version_we_take_has_an_hl7apy_library_to_gate_it() -> None:
    assert hl7apy_version("2.7.1") == "2.7"  # hl7apy 1.3 has no 2.7.1 library: the 2.7 one reads it
    assert hl7apy_version("2.5.1") == "2.5.1"
    assert hl7apy_version("2.9") is None
    assert all(hl7apy_version(v) is not None for v in SUPPORTED_VERSIONS)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_both_parsers_take_the_same_versions(tmp_path: Path, samples: dict[str, str], version: str) -> None:
    """A 2.7.1 message was AR (ERR 100) with hl7apy as the parser and AA with ours."""
    message = samples["ADT_A01"].replace("|P|2.5.1|", f"|P|{version}|", 1).encode()
    for parser in ("er7", "hl7apy"):
        store = MessageStore(make_engine(f"sqlite:///{tmp_path}/{parser}.db"))
        r = Hl7Pipeline(store, RecordingWriter(), parser=parser).ingest(message, "t")
        assert r.ack_code == "AA", (parser, store.get(r.message_id).outcome)


def test_a_version_we_do_not_take_is_answered_alike_by_both_parsers(tmp_path: Path, samples: dict[str, str]) -> None:
    """With hl7apy as the parser it was ERR 100 (segment sequence error) instead of 203 at MSH-12."""
    message = samples["ADT_A01"].replace("|P|2.5.1|", "|P|2.9|", 1).encode()
    answers = []
    for parser in ("er7", "hl7apy"):
        store = MessageStore(make_engine(f"sqlite:///{tmp_path}/{parser}.db"))
        r = Hl7Pipeline(store, RecordingWriter(), parser=parser).ingest(message, "t")
        err = parse_er7(r.acks[0].decode()).first("ERR")
        assert err is not None
        answers.append((r.ack_code, err.get(3, 1), err.raw(2)))
    assert answers[0] == answers[1] == ("CR", "203", "MSH^1^12")  # (the sample asks for enhanced mode)
