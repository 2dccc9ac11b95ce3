"""Primitive datatype checks: JSON type, the spec's regex, and what a regex cannot say.

The regexes come from the StructureDefinitions (shipped in the type model);
calendar validity, integer ranges, base64 and XHTML well-formedness are checked
in code because the spec states them in prose.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import date
from functools import cache, lru_cache
from typing import Any

from fhir_server.definitions import get_model

INT32 = (-(2**31), 2**31 - 1)
MAX_STRING = 1024 * 1024  # the spec's 1 MB limit for string values
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
XHTML_NS = "http://www.w3.org/1999/xhtml"

# Elements and attributes the narrative rules forbid (narrative.html#xhtml).
_XHTML_ALLOWED = {
    "a", "abbr", "acronym", "b", "big", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
    "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol",
    "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "tt", "ul", "var", "ins", "del", "s", "u", "strike", "font", "center", "bdo", "kbd",
    "address", "label", "map", "area",
}


@cache
def _regex(type_code: str) -> re.Pattern[str] | None:
    t = get_model().types.get(type_code)
    if t is None or not t.regex:
        return None
    return re.compile(t.regex)


def _valid_calendar(value: str) -> bool:
    if len(value) >= 10:
        try:
            date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
        except ValueError:
            return False
    return True


def _check_base64(value: str) -> str | None:
    compact = re.sub(r"\s+", "", value)
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return f"The value '{value[:40]}' is not a valid Base64 value"
    return None


def check_xhtml(value: str) -> str | None:
    """Narrative div: well-formed XHTML, no DTD/entities, only the permitted elements, no scripts."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(value.encode("utf-8"), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        return f"The narrative is not well-formed XHTML: {exc}"
    if root.tag != "{" + XHTML_NS + "}div":
        return "The narrative must be a <div> in the XHTML namespace"
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        ns, _, local = el.tag[1:].partition("}") if el.tag.startswith("{") else ("", "", el.tag)
        if ns != XHTML_NS or local not in _XHTML_ALLOWED:
            return f"Illegal element <{local}> in the narrative XHTML"
        for attr, attr_value in el.attrib.items():
            name = attr.rsplit("}", 1)[-1].lower()
            if name.startswith("on") or (name in ("href", "src") and
                                          attr_value.strip().lower().startswith("javascript:")):
                return f"Illegal attribute '{name}' in the narrative XHTML (active content)"
    return None


def _number_range(type_code: str, value: int) -> str | None:
    if not INT32[0] <= value <= INT32[1]:
        return f"The value {value} is outside the range of a 32-bit integer"
    if type_code == "positiveInt" and value < 1:
        return f"The value {value} must be a positive integer (>= 1)"
    if type_code == "unsignedInt" and value < 0:
        return f"The value {value} must be an unsigned integer (>= 0)"
    return None


def check_primitive(type_code: str, value: object) -> str | None:
    """Return a message when ``value`` is not a valid JSON representation of ``type_code``."""
    if type_code == "boolean":
        return None if isinstance(value, bool) else f"Expected a JSON boolean, found {_json_kind(value)}"
    if type_code in ("integer", "positiveInt", "unsignedInt"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return _number_range(type_code, int(value))
            return f"Expected a JSON integer, found {_json_kind(value)}"
        return _number_range(type_code, value)
    if type_code == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"Expected a JSON number, found {_json_kind(value)}"
        return None
    if not isinstance(value, str):
        return f"Expected a JSON string, found {_json_kind(value)}"
    if type_code == "xhtml":
        return check_xhtml(value)
    if len(value) > MAX_STRING:
        return f"value is longer than permitted maximum length of 1 MB ({MAX_STRING} bytes)"
    if len(value) <= _MEMO_MAX_LEN:
        return _check_text_memo(type_code, value)
    return _check_text(type_code, value)


# Short strings repeat across resources (systems, codes, units, statuses): their verdicts are remembered.
_MEMO_MAX_LEN = 128


# FHIR strings "SHALL NOT contain Unicode character points below 32, except for u0009 (horizontal tab), u0010
# (carriage return) and u0013 (line feed)" (R4 datatypes, string); PostgreSQL's JSONB cannot store a NUL at all.
CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def has_control_characters(value: Any) -> bool:
    """Whether any string in a JSON value (object keys included) holds one of ``CONTROL_CHARS``: for the JSON
    bodies outside FHIR resources (OAuth client metadata, CDS Hooks feedback) that are stored as text."""
    if isinstance(value, str):
        return CONTROL_CHARS.search(value) is not None
    if isinstance(value, dict):
        return any(has_control_characters(k) or has_control_characters(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_control_characters(v) for v in value)
    return False


def _check_text(type_code: str, value: str) -> str | None:
    bad = CONTROL_CHARS.search(value)
    if bad is not None:
        return (f"A {type_code} value must not contain control characters other than tab, CR and LF "
                f"(found U+{ord(bad.group()):04X} at offset {bad.start()})")
    checker = _EXTRA.get(type_code)
    regex = _regex(type_code)
    if regex is not None and not regex.fullmatch(value):
        if type_code in ("string", "markdown"):
            return "A string value must not be empty or only whitespace"
        return f"Not a valid {type_code} format: '{value[:60]}'"
    if checker is not None:
        return checker(value)
    return None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_date(value: str) -> str | None:
    return None if _valid_calendar(value) else f"Not a valid date: '{value}'"


def _check_string(value: str) -> str | None:
    if value.strip() == "":
        return "A string value must not be empty or only whitespace"
    return None


_check_text_memo = lru_cache(maxsize=8192)(_check_text)

_EXTRA: dict[str, Callable[[str], str | None]] = {
    "date": _check_date,
    "dateTime": _check_date,
    "instant": _check_date,
    "base64Binary": _check_base64,
    "string": _check_string,
    "markdown": _check_string,
}
