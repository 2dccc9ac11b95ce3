"""Message header facts, structure resolution and the optional hl7apy path.

``MessageStructure`` is MSH-9.3 when sent, otherwise derived from MSH-9.1/9.2
with HL7 table 0354 (the part we map).  ``parse_with_hl7apy`` runs the same
message through hl7apy in tolerant mode; it is the reference parser in tests
and the ``strict`` option, and its output is re-tokenized into our tree so the
mappers see one shape whichever parser ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from interfaces.er7 import Er7Error, Er7Message, parse_er7

# HL7 table 0354 (trigger event -> message structure), for the events we map.
EVENT_STRUCTURE: dict[str, str] = {
    "ADT^A01": "ADT_A01",
    "ADT^A04": "ADT_A01",
    "ADT^A08": "ADT_A01",
    "ADT^A13": "ADT_A01",
    "ADT^A02": "ADT_A02",
    "ADT^A03": "ADT_A03",
    "ADT^A05": "ADT_A05",
    "ADT^A14": "ADT_A05",
    "ADT^A28": "ADT_A05",
    "ADT^A31": "ADT_A05",
    "ADT^A06": "ADT_A06",
    "ADT^A07": "ADT_A06",
    "ADT^A11": "ADT_A09",
    "ADT^A12": "ADT_A12",
    "ADT^A40": "ADT_A39",
    "ADT^A39": "ADT_A39",
    "ADT^A41": "ADT_A39",
    "ADT^A42": "ADT_A39",
    "ORU^R01": "ORU_R01",
    "VXU^V04": "VXU_V04",
    "ORM^O01": "ORM_O01",
    "OML^O21": "OML_O21",
    "SIU^S12": "SIU_S12",
    "SIU^S13": "SIU_S12",
    "SIU^S14": "SIU_S12",
    "SIU^S15": "SIU_S12",
    "MDM^T02": "MDM_T02",
    "MDM^T04": "MDM_T02",
    "MDM^T06": "MDM_T02",
    "MDM^T08": "MDM_T02",
    "MDM^T01": "MDM_T01",
}

SUPPORTED_VERSIONS = (
    "2.1",
    "2.2",
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.7.1",
    "2.8",
    "2.8.1",
    "2.8.2",
)


@dataclass(frozen=True)
class Header:
    """The MSH facts the store, dedup and ACK need."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_datetime: str
    message_code: str
    trigger_event: str
    structure: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str

    @property
    def message_type(self) -> str:
        return f"{self.message_code}^{self.trigger_event}" if self.trigger_event else self.message_code

    @property
    def sender(self) -> str:
        return f"{self.sending_application}|{self.sending_facility}"

    @property
    def enhanced_mode(self) -> bool:
        """Enhanced acknowledgment when MSH-15 or MSH-16 is valued (HL7 v2 2.9.2)."""
        return bool(self.accept_ack_type or self.application_ack_type)


def header_of(msg: Er7Message) -> Header:
    msh = msg.msh
    code = msh.get(9, 1).upper()
    event = msh.get(9, 2).upper()
    structure = msh.get(9, 3).upper() or EVENT_STRUCTURE.get(f"{code}^{event}", "")
    if code == "ACK" and not structure:
        structure = "ACK"
    return Header(
        sending_application=msh.get(3, 1),
        sending_facility=msh.get(4, 1),
        receiving_application=msh.get(5, 1),
        receiving_facility=msh.get(6, 1),
        message_datetime=msh.get(7, 1),
        message_code=code,
        trigger_event=event,
        structure=structure,
        control_id=msh.get(10, 1),
        processing_id=msh.get(11, 1),
        version=msh.get(12, 1),
        accept_ack_type=msh.get(15, 1).upper(),
        application_ack_type=msh.get(16, 1).upper(),
    )


def decode(raw: bytes) -> str:
    """Decode per MSH-18 when it names UTF-8; HL7's ASCII/8859-1 default otherwise."""
    head = raw[:512]
    if b"UTF-8" in head.upper() or b"UNICODE" in head.upper():
        return raw.decode("utf-8", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse(raw: bytes | str, *, engine: str = "er7") -> tuple[Er7Message, Header]:
    text = decode(raw) if isinstance(raw, bytes) else raw
    msg = parse_with_hl7apy(text) if engine == "hl7apy" else parse_er7(text)
    return msg, header_of(msg)


def parse_with_hl7apy(text: str) -> Er7Message:
    """Gate the message through hl7apy (tolerant mode), then return our tree of the original text.

    hl7apy's own ER7 output re-escapes escape sequences (``\\.br\\`` becomes
    ``\\E\\.br\\E\\``) and drops trailing empty fields, so its tree is used
    to reject what it cannot parse, never as the source of values.
    """
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.exceptions import HL7apyException, InvalidName, UnsupportedVersion
    from hl7apy.parser import parse_segment

    base = parse_er7(text)
    version = base.msh.get(12, 1) or "2.5"
    fs = base.enc.field
    chars = {
        "FIELD": fs,
        "COMPONENT": base.enc.component,
        "REPETITION": base.enc.repetition,
        "ESCAPE": base.enc.escape or "\\",
        "SUBCOMPONENT": base.enc.subcomponent,
        "GROUP": "\r",
        "SEGMENT": "\r",
    }
    for seg in base.segments[1:]:
        try:
            parse_segment(
                fs.join(seg.fields), version=version, encoding_chars=chars, validation_level=VALIDATION_LEVEL.TOLERANT
            )
        except InvalidName:
            continue  # Z-segments and segments of a later version (e.g. PRT in 2.5.1) are tolerated
        except UnsupportedVersion as exc:
            raise Er7Error(f"unsupported HL7 version {version}") from exc
        except (HL7apyException, ValueError, KeyError) as exc:
            raise Er7Error(f"hl7apy could not parse segment {seg.name} (version {version}): {exc}") from exc
    return base
