"""v2 datatype -> FHIR datatype converters shared by every segment mapper.

Each follows the IG's datatype map of the same name (CX[Identifier],
XPN[HumanName], XAD[Address], XTN[ContactPoint], CWE[CodeableConcept],
DTM[dateTime], XCN[Practitioner], CQ[Quantity], EI[Identifier], HD).
Empty inputs give None so callers can drop absent elements.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fhir_server.validation.primitives import check_primitive
from interfaces.er7 import Field, Segment
from interfaces.mapping.builder import MappingError
from interfaces.mapping.codes import code_of, coding_of, id_system, system_uri

JsonDict = dict[str, Any]

_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")


def dtm(value: str, *, date_only: bool = False, instant: bool = False) -> str | None:
    """DTM/TS -> FHIR date/dateTime, keeping the sender's precision; None when not a v2 timestamp (a month
    13, a 30 February, an hour 24 and an offset beyond ±14:00 included: FHIR could not store them).
    ``instant``: for a FHIR ``instant``, which needs a time: None for a date without one."""
    v = value.strip().replace(" ", "")
    if not v:
        return None
    m = _TS.match(v)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    if date_only or h is None or mo is None or d is None:
        if instant:
            return None
        out = "-".join(p for p in (y, mo, d) if p)
    else:
        # FHIR needs an offset once a time is present; a v2 time without one is read as UTC (documented).
        out = f"{y}-{mo}-{d}T{h}:{mi or '00'}:{s or '00'}{frac or ''}" + (f"{tz[:3]}:{tz[3:]}" if tz else "+00:00")
    return out if check_primitive("dateTime", out) is None else None


def field_dtm(seg: Segment, idx: int, *, date_only: bool = False, instant: bool = False) -> str | None:
    """A timestamp field (``seg``-``idx``) as ``dtm`` gives it; a value that is not a timestamp is an error
    naming the field (AE, ERR-3 102), not dropped in silence. (A valid date where an ``instant`` wants a time
    is left out: the value is good v2, only less precise.)"""
    value = seg.get(idx)
    if not value:  # (HL7's explicit null "" reads as no value: interfaces.er7.NULL)
        return None
    out = dtm(value, date_only=date_only)
    if out is None:
        where = seg.get(1) if seg.name in _SET_ID_SEGMENTS and seg.get(1).isdigit() else "1"
        raise MappingError(f"{seg.name}-{idx} {value!r} is not a valid date/time", f"{seg.name}^{where}^{idx}",
                           ("102", "Data type error"))
    return None if instant and "T" not in out else out


_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,4})?$")


def tm(value: str) -> str | None:
    """TM -> FHIR time (``hh:mm:ss``); None when not a v2 time, or when it carries an offset (FHIR's time has
    none: the caller keeps the text rather than drop the offset)."""
    m = _TM.match(value.strip())
    if not m:
        return None
    h, mi, s, frac = m.groups()
    out = f"{h}:{mi or '00'}:{s or '00'}{frac or ''}"
    return out if check_primitive("time", out) is None else None


# Segments whose first field is a Set ID (ERR-2's segment sequence for them; 1 for the others)
_SET_ID_SEGMENTS = frozenset({"PID", "PV1", "OBX", "OBR", "DG1", "AL1", "PR1", "TXA", "AIS", "IN1", "NK1"})


def hd_system(hd: Field) -> str | None:
    """HD (namespace^universal id^type) -> a URI usable as Identifier.system."""
    ns, uid, utype = hd.c(1), hd.c(2), hd.c(3).upper()
    if uid and _SPACE.search(uid):  # no URI has one: not what its type says, a valid URI all the same
        return id_system(uid)
    if uid:
        if utype == "ISO" or _OID.fullmatch(uid):
            return "urn:oid:" + uid.rstrip(".")
        if utype in ("UUID", "GUID") and re.fullmatch(r"[0-9a-fA-F-]{36}", uid):
            return "urn:uuid:" + uid.lower()
        if utype in ("URI", "URL") or "://" in uid:
            return uid
        return id_system(uid)
    if ns:
        uri = system_uri(ns)
        return uri if uri and not _SPACE.search(uri) else id_system(ns)
    return None


_OID = re.compile(r"[0-2](\.\d+)+\.?")
_SPACE = re.compile(r"\s")  # a FHIR uri has none


def cx(f: Field | None) -> JsonDict | None:
    if f is None:
        return None
    value = f.c(1)
    if not value:
        return None
    out: JsonDict = {"value": value}
    auth = f.comp_field(4)
    system = hd_system(auth)
    if system:
        out["system"] = system
    if auth.c(1):
        out["assigner"] = {"display": auth.c(1)}
    id_type = f.c(5)
    if id_type:
        coding = coding_of("IdentifierType", id_type) or {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
            "code": id_type,
        }
        out["type"] = {"coding": [coding]}
        if coding.get("display"):
            out["type"]["text"] = coding["display"]
        if id_type == "SS" and "system" not in out:
            out["system"] = "http://hl7.org/fhir/sid/us-ssn"
    period = _period(f.c(7), f.c(8), date_only=True)
    if period:
        out["period"] = period
    return out


def ei(f: Field | None) -> JsonDict | None:
    """EI (entity id^namespace^universal id^type) -> Identifier."""
    if f is None:
        return None
    value = f.c(1)
    if not value:
        return None
    out: JsonDict = {"value": value}
    hd = Field(f.enc.component.join([f.c(2), f.c(3), f.c(4)]), f.enc)
    system = hd_system(hd)
    if system:
        out["system"] = system
    return out


def _period(start: str, end: str, *, date_only: bool = False) -> JsonDict | None:
    p = {k: v for k, v in (("start", dtm(start, date_only=date_only)), ("end", dtm(end, date_only=date_only))) if v}
    return p or None


def xpn(f: Field | None) -> JsonDict | None:
    if f is None:
        return None
    out: JsonDict = {}
    if f.c(1):
        out["family"] = f.c(1)
    given = [g for g in (f.c(2), *f.c(3).split(" ")) if g] if (f.c(2) or f.c(3)) else []
    if given:
        out["given"] = given
    if f.c(5):
        out["prefix"] = [f.c(5)]
    suffix = [s for s in (f.c(4), f.c(6), f.c(14)) if s]
    if suffix:
        out["suffix"] = suffix
    if not out:
        return None
    use = code_of("NameType", f.c(7))
    if use:
        out["use"] = use
    period = _validity(f, 12, 13, 10)
    if period:
        out["period"] = period
    return out


def _validity(f: Field, start: int, end: int, range_comp: int) -> JsonDict | None:
    """XPN/XAD validity: the effective/expiration date components, else the older DR range component."""
    return _period(f.c(start), f.c(end), date_only=True) or (
        _period(f.comp_field(range_comp).c(1), f.comp_field(range_comp).c(2), date_only=True)
        if f.c(range_comp) else None)


def xad(f: Field | None) -> JsonDict | None:
    if f is None:
        return None
    out: JsonDict = {}
    lines = [x for x in (f.c(1), f.c(2)) if x]
    if lines:
        out["line"] = lines
    for idx, key in ((3, "city"), (4, "state"), (5, "postalCode"), (6, "country"), (9, "district")):
        if f.c(idx):
            out[key] = f.c(idx)
    if not out:
        return None
    kind = f.c(7)
    use = code_of("AddressType[Use]", kind)
    if use:
        out["use"] = use
    elif kind == "M":
        out["type"] = "postal"
    period = _validity(f, 13, 14, 12)
    if period:
        out["period"] = period
    return out


def xtn(f: Field | None) -> JsonDict | None:
    if f is None:
        return None
    equip = f.c(3)
    email = f.c(4)
    number = ""
    if f.c(7):
        cc, area, local, ext = f.c(5), f.c(6), f.c(7), f.c(8)
        number = (f"+{cc} " if cc else "") + (f"({area}) " if area else "") + local + (f" X{ext}" if ext else "")
    number = number or f.c(1) or f.c(12)
    out: JsonDict = {}
    if email and (equip in ("Internet", "X.400") or not number):
        out = {"system": "email", "value": email}
    elif number:
        out = {"value": number}
        system = code_of("TelecommunicationEquipmentType", equip)
        if equip == "CP":
            out["system"] = "phone"
            out["use"] = "mobile"
        elif system:
            out["system"] = system
        elif equip:
            out["system"] = "other"
        else:
            out["system"] = "phone"
    if not out:
        return None
    use = code_of("TelecommunicationUseCode", f.c(2))
    if use and "use" not in out:
        out["use"] = use
    return out


def cwe(f: Field | None, *, table: str = "") -> JsonDict | None:
    """CWE/CE/CNE -> CodeableConcept (primary and alternate codings, CWE-9 original text)."""
    if f is None:
        return None
    codings: list[JsonDict] = []
    for i in (1, 4):
        code, display, sysname = f.c(i), f.c(i + 1), f.c(i + 2) or (table if i == 1 else "")
        if not code:
            continue
        coding: JsonDict = {"code": code}
        uri = system_uri(sysname)
        if uri:
            coding["system"] = uri
        if display:
            coding["display"] = display
        codings.append(coding)
    out: JsonDict = {}
    if codings:
        out["coding"] = codings
    text = f.c(9) or (f.c(2) if f.c(2) else "")
    if text:
        out["text"] = text
    return out or None



def mapped_concept(f: Field | None, concept_map: str, *, table: str = "") -> JsonDict | None:
    """A coded field through the IG's ConceptMap when its code is in it (the FHIR code only), else as sent."""
    if f is None or not f.c(1):
        return None
    coding = coding_of(concept_map, f.c(1))
    return {"coding": [coding]} if coding else cwe(f, table=table)

def code_text(f: Field | None) -> str:
    return f.c(1) if f is not None else ""


def xcn_name(f: Field) -> JsonDict | None:
    name: JsonDict = {}
    if f.c(2):
        name["family"] = f.c(2)
    given = [g for g in (f.c(3), f.c(4)) if g]
    if given:
        name["given"] = given
    if f.c(6):
        name["prefix"] = [f.c(6)]
    suffix = [s for s in (f.c(5), f.c(7)) if s]
    if suffix:
        name["suffix"] = suffix
    return name or None


def xcn_identifier(f: Field) -> JsonDict | None:
    """XCN-1 with XCN-9 assigning authority (and XCN-13 type) -> Identifier."""
    if not f.c(1):
        return None
    out: JsonDict = {"value": f.c(1)}
    system = hd_system(f.comp_field(9))
    if system:
        out["system"] = system
    if f.c(13):
        out["type"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": f.c(13)}]}
        if f.c(13) == "NPI" and "system" not in out:
            out["system"] = "http://hl7.org/fhir/sid/us-npi"
    return out


def practitioner(f: Field) -> JsonDict | None:
    """XCN -> Practitioner (identifier + name)."""
    ident = xcn_identifier(f)
    name = xcn_name(f)
    if not ident and not name:
        return None
    out: JsonDict = {"resourceType": "Practitioner"}
    if ident:
        out["identifier"] = [ident]
    if name:
        out["name"] = [name]
    return out


def number(value: str) -> int | float | None:
    """NM -> JSON number; None (the caller answers AE) for what FHIR decimal cannot hold: more than 18
    significant digits, an integer beyond 64 bits, or a float that overflows (``1e999999`` is inf)."""
    v = value.strip()
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", v):
        return None
    if len(re.sub(r"[^0-9]", "", v.split("e")[0].split("E")[0]).lstrip("0")) > 18:
        return None
    if re.fullmatch(r"[+-]?\d+", v):
        n = int(v)
        return n if -(2**63) <= n < 2**63 else None
    f = float(v)
    return f if math.isfinite(f) else None


def quantity(value: str, units: Field | None) -> JsonDict | None:
    """NM (+ CWE units) -> Quantity; UCUM system only when the unit is declared UCUM or looks UCUM."""
    num = number(value)
    if num is None:
        return None
    out: JsonDict = {"value": num}
    if units is not None and units.c(1):
        out["unit"] = units.c(2) or units.c(1)
        sysname = units.c(3).upper()
        if sysname in ("UCUM", "") and re.fullmatch(r"[A-Za-z0-9/.%\[\]{}*^'()-]+", units.c(1)):
            out["system"] = "http://unitsofmeasure.org"
            out["code"] = units.c(1)
            out["unit"] = units.c(1) if not units.c(2) else units.c(2)
    return out


def structured_numeric(f: Field, units: Field | None) -> tuple[str, Any] | None:
    """SN (comparator^num1^separator^num2) -> valueQuantity (with comparator), valueRange or valueRatio."""
    comp, n1, sep, n2 = f.c(1), f.c(2), f.c(3), f.c(4)
    if not n1 and comp and number(comp.lstrip("<>=")) is not None:  # "<0.10" sent in SN-1 alone
        for op in ("<=", ">=", "<", ">"):
            if comp.startswith(op):
                comp, n1 = op, comp[len(op) :]
                break
    q1 = quantity(n1, units)
    if q1 is None:
        return None
    if sep == ":" or sep == "/":
        q2 = quantity(n2, None)
        return ("valueRatio", {"numerator": q1, "denominator": q2 or {"value": 1}})
    if sep == "-" and n2:
        q2 = quantity(n2, units)
        return ("valueRange", {"low": q1, "high": q2})
    if comp in ("<", ">", "<=", ">="):
        q1["comparator"] = comp
    return ("valueQuantity", q1)


def reference_range(text: str, units: Field | None) -> JsonDict | None:
    """OBX-7 ("3.5-5.0", "<0.10", ">10") -> Observation.referenceRange."""
    t = text.strip()
    if not t:
        return None
    m = re.fullmatch(r"\s*([+-]?\d*\.?\d+)\s*-\s*([+-]?\d*\.?\d+)\s*", t)
    if m:
        low, high = quantity(m.group(1), units), quantity(m.group(2), units)
        return {"low": low, "high": high, "text": t}
    m = re.fullmatch(r"\s*(<=?|>=?)\s*([+-]?\d*\.?\d+)\s*", t)
    if m:
        q = quantity(m.group(2), units)
        return {("high" if m.group(1).startswith("<") else "low"): q, "text": t}
    return {"text": t}
