"""Message header facts, structure resolution and the optional hl7apy path.

``MessageStructure`` is MSH-9.3 when sent, otherwise derived from MSH-9.1/9.2
with HL7 table 0354 (the part we map).  ``parse_with_hl7apy`` runs the same
message through hl7apy in tolerant mode (``hl7_parser=hl7apy``) as a gate, and
the mappers read our tree of the original text whichever parser ran; hl7apy is
also the reference our tokenizer is tested against
(tests/unit/interfaces/test_hl7apy_reference.py).
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
    """The MSH facts the store, dedup and ACK need, and the patient's identifier the store files it under."""

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
    patient_id: str = ""  # PID-3.1 of the MR identifier, else of the first one ("" without a PID)

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
        patient_id=_patient_id(msg),
    )


def _patient_id(msg: Er7Message) -> str:
    """The identifier an engineer looks a patient's messages up by (``GET /hl7v2/messages?patient=``): the
    value of the MR in PID-3, else of its first identifier. Read for every message, mappable or not, so that
    the messages that failed are found too."""
    pid = msg.first("PID")
    if pid is None:
        return ""
    ids = [f for f in pid.fields_of(3) if f.c(1)]
    return next((f.c(1) for f in ids if f.c(5).upper() == "MR"), ids[0].c(1) if ids else "")


# HL7 table 0211 (MSH-18) -> Python codec. UTF-16/32 are left out: MLLP's single-byte framing excludes them.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii", "UNICODE": "utf-8", "UNICODE UTF-8": "utf-8", "GB 18030-2000": "gb18030", "BIG-5": "big5",
    "KS X 1001": "euc_kr", **{f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
}


def declared_charset(raw: bytes) -> str | None:
    """The Python codec for the message's MSH-18 (first repetition), None when absent or unknown."""
    first = next((seg for seg in raw[:65536].replace(b"\n", b"\r").split(b"\r")
                  if seg.lstrip(b"\xef\xbb\xbf").startswith(b"MSH")), b"").lstrip(b"\xef\xbb\xbf")
    if len(first) < 8:  # none (a batch file's FHS/BHS come first: its first MSH tells)
        return None
    fields = first.split(first[3:4])
    if len(fields) < 18:
        return None
    value = fields[17].split(first[5:6], 1)[0].strip().upper()
    return CHARSETS.get(value.decode("ascii", "replace"))


def decode_with_charset(raw: bytes) -> tuple[str, str]:
    """The message as text and the codec it was read with: UTF-8 whenever the bytes are valid UTF-8 (senders
    that declare 8859/1 and send UTF-8 are common; ISO 8859 text is practically never valid UTF-8), otherwise
    MSH-18's charset, and ISO 8859-1 when MSH-18 names none or ASCII (a byte the charset lacks becomes
    U+FFFD). The common case decodes once."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        declared = declared_charset(raw)
        codec = "latin-1" if declared in (None, "ascii") else declared
        return raw.decode(codec, errors="replace"), codec


def decode(raw: bytes) -> str:
    return decode_with_charset(raw)[0]


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
    from hl7apy.exceptions import HL7apyException, InvalidName
    from hl7apy.parser import parse_segment

    base = parse_er7(text)
    version = hl7apy_version(base.msh.get(12, 1) or "2.5")
    if version is None:
        return base  # not a version we take: the pipeline answers that (AR, ERR 203 at MSH-12) for both parsers
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
        except (HL7apyException, ValueError, KeyError) as exc:
            raise Er7Error(f"hl7apy could not parse segment {seg.name} (version {version}): {exc}") from exc
    return base


def hl7apy_version(version: str) -> str | None:
    """The hl7apy library that reads ``version``: its own, or for a version we take that hl7apy has no library
    for (2.7.1, a technical correction of 2.7), the latest earlier one; None for a version we do not take."""
    from hl7apy import SUPPORTED_LIBRARIES

    if version not in SUPPORTED_VERSIONS:
        return None
    known = [v for v in SUPPORTED_VERSIONS[:SUPPORTED_VERSIONS.index(version) + 1] if v in SUPPORTED_LIBRARIES]
    return known[-1] if known else None
