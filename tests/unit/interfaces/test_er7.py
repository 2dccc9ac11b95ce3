import pytest

from interfaces.er7 import Er7Error, parse_er7, unescape
from interfaces.parsing import parse, parse_with_hl7apy


def test_escapes_repetitions_and_components():
    m = parse_er7("MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5\rPID|1||7^^^H&1.2.3&ISO^MR~8^^^X||Doe\\S\\Jr^J\\T\\K||"
                  "\rNTE|1||line1\\.br\\line2 \\F\\ pipe \\E\\ esc \\X41\\")
    pid = m.first("PID")
    assert pid.get(3, 1, rep=2) == "8"
    assert pid.get(3, 4, 2) == "1.2.3"
    assert pid.get(5, 1) == "Doe^Jr"
    assert pid.get(5, 2) == "J&K"
    assert pid.get(30) == ""  # missing trailing fields are empty, not errors
    assert m.first("NTE").get(3) == "line1\nline2 | pipe \\ esc A"


def test_hl7_explicit_null_reads_as_no_value():
    """``""`` means "delete this value": as no value it drops out of the FHIR resource that replaces the old."""
    rxa = ["RXA", "0", "1", '""', "", "CVX^x^CVX"] + [""] * 9 + ['""', '""^Lot \\H\\A\\N\\']
    m = parse_er7("MSH|^~\\&|A|B|||20240101||VXU^V04|1|P|2.5\r" + "|".join(rxa))
    seg = m.first("RXA")
    assert (seg.get(3), seg.get(15), seg.get(16, 1), seg.get(16, 2)) == ("", "", "", "Lot A")
    assert seg.fields_of(15) == [] and seg.field_value(16) is not None
    assert seg.field_value(16).c(1) == "" and seg.field_value(16).c(2) == "Lot A"  # a component's null too


def test_other_encoding_characters_and_lf_separators():
    m = parse_er7("MSH#$*@%#A#B\nZZ1#x$y*z\n")
    assert m.enc.component == "$" and m.enc.repetition == "*" and m.enc.escape == "@"
    assert m.first("ZZ1").get(1, 2) == "y"
    assert m.first("ZZ1").get(1, 1, rep=2) == "z"


def test_unknown_escape_is_kept():
    m = parse_er7("MSH|^~\\&|A\r")
    assert unescape("a\\Q9\\b", m.enc) == "a\\Q9\\b"


def test_control_characters_fhir_cannot_hold_become_spaces():
    """Raw or escaped (\\X0C\\): a form feed in a report line must not make the whole message invalid FHIR."""
    m = parse_er7("MSH|^~\\&|A\rOBX|1|TX|||page 1\x0cpage 2\\X0C\\end\tcol\\.br\\next\x1a")
    assert m.first("OBX").get(5) == "page 1 page 2 end\tcol\nnext"  # tab and line breaks stay (trailing space stripped)
    assert unescape("a\\X07\\b\\X41\\", m.enc) == "a bA"


@pytest.mark.parametrize("bad", ["", "PID|1", "MSH", "MSH|^~\\&\rP I D|1"])
def test_not_hl7(bad):
    with pytest.raises(Er7Error):
        parse_er7(bad)


def test_header_derives_structure_from_event_when_msh_9_3_is_empty():
    _, h = parse(b"MSH|^~\\&|APP|FAC|R|RF|20240101||ADT^A04|42|P|2.3\rPID|1||1\r")
    assert (h.structure, h.control_id, h.sender, h.enhanced_mode) == ("ADT_A01", "42", "APP|FAC", False)


def test_hl7apy_gate_accepts_every_ig_sample_and_agrees_with_our_fields(samples):
    for structure, text in samples.items():
        ours = parse_er7(text)
        gated = parse_with_hl7apy(text)
        assert [s.fields for s in gated.segments] == [s.fields for s in ours.segments], structure
    from hl7apy.parser import parse_message

    pid = parse_message(samples["ADT_A01"].replace("\r", "\r"), find_groups=False).children[2]
    assert pid.name == "PID"
    assert pid.pid_3[0].cx_1.value == parse_er7(samples["ADT_A01"]).first("PID").get(3, 1)
