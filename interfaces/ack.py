"""ACK building: original mode (AA/AE/AR) and enhanced mode (CA/CE/CR + application ACK).

MSA-2 always echoes MSH-10; the ACK's MSH swaps sender and receiver and keeps
the version and processing id, so the sender's engine can correlate it.  ERR
segments carry HL7 table 0357 codes plus a readable diagnostic.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

from interfaces.er7 import Encoding
from interfaces.parsing import Header

# HL7 table 0357 (message error condition codes) we emit.
ERR_SEGMENT_SEQUENCE = ("100", "Segment sequence error")
ERR_REQUIRED_FIELD = ("101", "Required field missing")
ERR_DATA_TYPE = ("102", "Data type error")
ERR_TABLE_VALUE = ("103", "Table value not found")
ERR_UNSUPPORTED_TYPE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_EVENT = ("201", "Unsupported event code")
ERR_UNSUPPORTED_PROCESSING_ID = ("202", "Unsupported processing id")
ERR_UNSUPPORTED_VERSION = ("203", "Unsupported version id")
ERR_UNKNOWN_KEY = ("204", "Unknown key identifier")
ERR_DUPLICATE_KEY = ("205", "Duplicate key identifier")
ERR_INTERNAL = ("207", "Application internal error")

_counter = itertools.count(1)
_prefix = f"{os.getpid() % 10000:04d}"


@dataclass(frozen=True)
class AckError:
    code: tuple[str, str]
    diagnostic: str
    location: str = ""  # ERL: segment^sequence^field, e.g. "PID^1^3"
    severity: str = "E"


def _escape(text: str, enc: Encoding) -> str:
    esc = enc.escape or "\\"
    out = text.replace(esc, f"{esc}E{esc}")
    for ch, code in ((enc.field, "F"), (enc.component, "S"), (enc.subcomponent, "T"), (enc.repetition, "R")):
        out = out.replace(ch, f"{esc}{code}{esc}")
    return out.replace("\r", " ").replace("\n", " ")


def _now() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "+0000"


def build_ack(
    header: Header | None,
    code: str,
    *,
    text: str = "",
    errors: list[AckError] | None = None,
    enc: Encoding | None = None,
    receiver: tuple[str, str] = ("DIGITALFRONT", "DIGITALFRONT"),
) -> bytes:
    """An ACK for ``header``; ``header`` is None when not even MSH could be read (AR/CR)."""
    enc = enc or Encoding()
    fs, cs = enc.field, enc.component
    if header is not None:
        send_app, send_fac = (
            header.receiving_application or receiver[0],
            header.receiving_facility or receiver[1],
        )
        recv_app, recv_fac = header.sending_application, header.sending_facility
        event, control, proc, version = (
            header.trigger_event,
            header.control_id,
            header.processing_id,
            header.version,
        )
    else:
        send_app, send_fac = receiver
        recv_app = recv_fac = event = control = ""
        proc, version = "P", "2.5.1"
    msg_type = f"ACK{cs}{_escape(event, enc)}{cs}ACK" if event else f"ACK{cs}{cs}ACK"
    ack_id = f"ACK{_prefix}{int(time.time() * 1000)}{next(_counter)}"
    msh = fs.join(
        [
            "MSH",
            enc.msh2,
            _escape(send_app, enc),
            _escape(send_fac, enc),
            _escape(recv_app, enc),
            _escape(recv_fac, enc),
            _now(),
            "",
            msg_type,
            ack_id,
            proc or "P",
            version or "2.5.1",
        ]
    )
    msa = fs.join(["MSA", code, _escape(control, enc), _escape(text[:80], enc)])
    segs = [msh, msa]
    for err in errors or []:
        loc = err.location.replace("^", cs)
        segs.append(
            fs.join(
                [
                    "ERR",
                    "",
                    loc,
                    f"{err.code[0]}{cs}{err.code[1]}{cs}HL70357",
                    err.severity,
                    "",
                    "",
                    "",
                    _escape(err.diagnostic[:1000], enc),
                ]
            )
        )
    return ("\r".join(segs) + "\r").encode("utf-8")


def ack_code(accept: bool, ok: bool | None, rejected: bool = False) -> str:
    """Map outcomes to MSA-1: ``accept`` picks the enhanced commit codes (C*), else A*."""
    first = "C" if accept else "A"
    if rejected:
        return first + "R"
    return first + ("A" if ok else "E")


def wants_ack(ack_type: str, ok: bool) -> bool:
    """HL7 table 0155 (AL/NE/ER/SU) for MSH-15/16; empty means always in original mode."""
    t = (ack_type or "AL").upper()
    return t == "AL" or (t == "ER" and not ok) or (t == "SU" and ok)


def batch_ack(acks_per_message: list[list[bytes]]) -> bytes:
    """The answer to an FHS/BHS batch: each message's ACKs (none, or a commit and an application ACK) in a
    BHS ... BTS batch (BTS-1: how many of the messages are answered)."""
    answered = [b"".join(acks) for acks in acks_per_message if acks]
    return (f"BHS|^~\\&|DIGITALFRONT|DIGITALFRONT|||{_now()}\r".encode() + b"".join(answered)
            + f"BTS|{len(answered)}\r".encode())
