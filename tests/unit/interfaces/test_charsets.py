"""Which character set a message is read with (MSH-18, HL7 table 0211), through ``parse``."""

from __future__ import annotations

import pytest

from interfaces.parsing import parse

MSG = "MSH|^~\\&|ADM|HOSP|DF|DF|20240101120000||ADT^A01^ADT_A01|cs1|P|2.5{charset}\rPID|1||1^^^HOSP^MR||{name}\r"


def family(raw: bytes) -> str:
    msg, _ = parse(raw)
    return msg.first("PID").get(5, 1)


@pytest.mark.parametrize(("charset", "codec", "name"), [
    ("8859/1", "latin-1", "Müller"),
    ("8859/2", "iso8859-2", "Łukaszewicz"),
    ("8859/15", "iso8859-15", "Œuvre€"),
    ("8859/7", "iso8859-7", "Παπαδόπουλος"),
])
def test_declared_single_byte_charsets(charset, codec, name):
    raw = MSG.format(charset=f"|||||X|{charset}", name=name).encode(codec)
    assert family(raw) == name


def test_utf8_bytes_win_over_a_wrong_declaration():
    # a common misconfiguration: MSH-18 says 8859/1 while the engine sends UTF-8
    assert family(MSG.format(charset="|||||X|8859/1", name="Müller").encode("utf-8")) == "Müller"


def test_no_declaration_or_ascii_falls_back_to_latin1_for_non_utf8_bytes():
    assert family(MSG.format(charset="", name="Müller").encode("latin-1")) == "Müller"
    assert family(MSG.format(charset="|||||X|ASCII", name="Müller").encode("latin-1")) == "Müller"
    assert family(MSG.format(charset="", name="Müller").encode("utf-8")) == "Müller"


def test_first_repetition_of_msh18_is_the_default_charset():
    raw = MSG.format(charset="|||||X|8859/2~UNICODE UTF-8", name="Łódź").encode("iso8859-2")
    assert family(raw) == "Łódź"
