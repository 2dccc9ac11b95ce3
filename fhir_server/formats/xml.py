"""FHIR XML <-> JSON, driven by the R4 type model (xml.html, json.html).

XML needs the type model because JSON and XML differ in shape: primitives carry
``value`` attributes (their ``id``/extensions go to ``_name`` in JSON), element
order is the definition order, repetition is only known from the cardinality,
and resources nest inside ``contained``/``entry.resource`` wrapper elements.
Parsing goes through defusedxml: DTDs and entities are refused with a 400.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from fhir_server.definitions import ElementDef, TypeModel, get_model
from fhir_server.errors import bad_request

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"
_F = "{" + FHIR_NS + "}"
_H = "{" + XHTML_NS + "}"
_INT_TYPES = {"integer", "positiveInt", "unsignedInt"}
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# ---------------------------------------------------------------- XML -> JSON


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _primitive_value(raw: str, type_code: str, where: str) -> Any:
    if type_code == "boolean":
        if raw not in ("true", "false"):
            raise bad_request(f"Invalid boolean '{raw}' at {where}", code="value")
        return raw == "true"
    if type_code in _INT_TYPES:
        try:
            return int(raw)
        except ValueError as exc:
            raise bad_request(f"Invalid integer '{raw}' at {where}", code="value") from exc
    if type_code == "decimal":
        try:
            if re.fullmatch(r"-?(0|[1-9][0-9]*)", raw):
                return int(raw)
            return float(raw)
        except ValueError as exc:
            raise bad_request(f"Invalid decimal '{raw}' at {where}", code="value") from exc
    return raw


def _xhtml_to_string(el: Element, root: bool = True) -> str:
    ns, local = _split(el.tag)
    if ns != XHTML_NS:
        raise bad_request(f"Narrative contains a non-XHTML element <{local}>", code="structure")
    parts = ["<", local]
    if root:
        parts.append(f' xmlns="{XHTML_NS}"')
    for k, v in el.attrib.items():
        ans, alocal = _split(k)
        name = f"xml:{alocal}" if ans == XML_NS else alocal
        parts.append(f' {name}="{_escape_attr(v)}"')
    children = list(el)
    if el.text is None and not children:
        parts.append("/>")
    else:
        parts.append(">")
        parts.append(_escape_text(el.text or ""))
        for child in children:
            parts.append(_xhtml_to_string(child, False))
            parts.append(_escape_text(child.tail or ""))
        parts.append(f"</{local}>")
    return "".join(parts)


class _Reader:
    def __init__(self, model: TypeModel) -> None:
        self.model = model

    def resource(self, el: Element, where: str) -> dict[str, Any]:
        ns, rtype = _split(el.tag)
        if ns != FHIR_NS:
            raise bad_request(f"Element <{rtype}> at {where} is not in the FHIR namespace", code="structure")
        if not self.model.is_resource(rtype):
            raise bad_request(f"Unknown resource type '{rtype}'", code="structure")
        out: dict[str, Any] = {"resourceType": rtype}
        self.children(el, rtype, out, rtype)
        return out

    def children(self, el: Element, node_path: str, out: dict[str, Any], where: str) -> None:
        node = self.model.node(node_path)
        if node is None:
            raise bad_request(f"No definition for {node_path}", code="structure")
        for attr, value in el.attrib.items():
            # id on datatypes and url on Extension are attributes; value is handled by the caller
            if attr == "value":
                continue
            hit = node.resolve(attr)
            if hit is None or not hit[0].xml_attr:
                raise bad_request(f"Unexpected attribute '{attr}' at {where}", code="structure")
            out[attr] = value
        for child in el:
            ns, name = _split(child.tag)
            if not isinstance(child.tag, str):
                continue  # comments and processing instructions
            if ns != FHIR_NS and not (ns == XHTML_NS and name == "div"):
                raise bad_request(f"Element <{name}> at {where} is not in the FHIR namespace",
                                  code="structure")
            hit = node.resolve(name)
            if hit is None or (ns == XHTML_NS) != (hit[1] == "xhtml"):
                raise bad_request(f"Unknown element '{name}' at {where}", code="structure")
            eldef, tc = hit
            self.value(child, eldef, tc, name, out, f"{where}.{name}")

    def value(self, el: Element, eldef: ElementDef, tc: str, name: str, out: dict[str, Any],
              where: str) -> None:
        if tc == "xhtml":
            self._put(out, name, _xhtml_from(el, where), None, eldef.repeats)
            return
        if tc == "Resource" or tc == "DomainResource":
            kids = [c for c in el if isinstance(c.tag, str)]
            if len(kids) != 1:
                raise bad_request(f"{where} must hold exactly one resource", code="structure")
            self._put(out, name, self.resource(kids[0], where), None, eldef.repeats)
            return
        if self.model.is_primitive(tc):
            extra = set(el.attrib) - {"value", "id"}
            if extra:
                raise bad_request(f"Unexpected attribute '{sorted(extra)[0]}' at {where}", code="structure")
            raw = el.attrib.get("value")
            value = None if raw is None else _primitive_value(raw, tc, where)
            ext: dict[str, Any] = {}
            if "id" in el.attrib:
                ext["id"] = el.attrib["id"]
            self.children(_without_attrs(el), tc, ext, where)
            if value is None and not ext:
                raise bad_request(f"Primitive {where} has no value and no extensions", code="structure")
            self._put(out, name, value, ext or None, eldef.repeats)
            return
        obj: dict[str, Any] = {}
        self.children(el, eldef.child_node(tc), obj, where)
        self._put(out, name, obj, None, eldef.repeats)

    @staticmethod
    def _put(out: dict[str, Any], name: str, value: Any, ext: dict[str, Any] | None, repeats: bool) -> None:
        ext_key = f"_{name}"
        if not repeats:
            if name in out or ext_key in out:
                raise bad_request(f"Element '{name}' repeats but its maximum cardinality is 1",
                                  code="structure")
            if value is not None:
                out[name] = value
            if ext is not None:
                out[ext_key] = ext
            return
        # Repeating primitives keep values and their id/extensions in two aligned arrays.
        count = max(len(out.get(name, ())), len(out.get(ext_key, ())))
        for key, item in ((name, value), (ext_key, ext)):
            if item is not None or key in out:
                arr = out.setdefault(key, [])
                arr.extend([None] * (count - len(arr)))
                arr.append(item)


def _without_attrs(el: Element) -> Element:
    clone = Element(el.tag)
    clone.extend(list(el))
    return clone


def _xhtml_from(el: Element, where: str) -> str:
    """Narrative.div is itself the XHTML ``div`` element (not a FHIR wrapper around one)."""
    ns, local = _split(el.tag)
    if ns == XHTML_NS and local == "div":
        return _xhtml_to_string(el)
    raise bad_request(f"{where} must be an XHTML div in the XHTML namespace", code="structure")


def parse_xml(body: bytes) -> dict[str, Any]:
    """Parse a FHIR XML resource into FHIR JSON (400 on anything malformed or unknown)."""
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise bad_request(f"XML with DTDs or entities is refused: {exc!r}", code="security") from exc
    except (ParseError, ValueError) as exc:
        raise bad_request(f"Malformed XML body: {exc}", code="structure") from exc
    return _Reader(get_model()).resource(root, _split(root.tag)[1])


# ---------------------------------------------------------------- JSON -> XML


def _check_chars(s: str) -> str:
    if _INVALID_XML_CHARS.search(s):
        return _INVALID_XML_CHARS.sub("\ufffd", s)
    return s


def _escape_text(s: str) -> str:
    return _check_chars(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(s: str) -> str:
    return (_escape_text(s).replace('"', "&quot;").replace("\n", "&#10;")
            .replace("\r", "&#13;").replace("\t", "&#9;"))


def _format_primitive(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") and "e" not in text else text
    return str(value)


class _Writer:
    def __init__(self, model: TypeModel, pretty: bool) -> None:
        self.model = model
        self.pretty = pretty
        self.parts: list[str] = []

    def _open(self, depth: int) -> None:
        if self.pretty:
            self.parts.append("\n" + "  " * depth if self.parts else "")

    def resource(self, res: dict[str, Any], depth: int, root: bool = False) -> None:
        rtype = res.get("resourceType")
        if not isinstance(rtype, str) or self.model.node(rtype) is None:
            raise bad_request(f"Cannot render unknown resource type {rtype!r} as XML", code="structure")
        self._open(depth)
        self.parts.append(f'<{rtype} xmlns="{FHIR_NS}">' if root else f"<{rtype}>")
        self.children(res, rtype, depth + 1)
        self._open(depth)
        self.parts.append(f"</{rtype}>")

    def children(self, obj: dict[str, Any], node_path: str, depth: int) -> None:
        node = self.model.node(node_path)
        if node is None:
            return
        # XML order is definition order: sort the present keys by element position.
        present: dict[str, tuple[int, ElementDef, str]] = {}
        for key in obj:
            name = key[1:] if key.startswith("_") else key
            if name in present:
                continue
            hit = node.resolve(name)
            if hit is None or hit[0].xml_attr:
                continue
            present[name] = (node.order[hit[0].name], hit[0], hit[1])
        for name, (_, eldef, tc) in sorted(present.items(), key=lambda kv: kv[1][0]):
            self.element(obj, name, eldef, tc, depth)

    def element(self, obj: dict[str, Any], key: str, eldef: ElementDef, tc: str, depth: int) -> None:
        value = obj.get(key)
        ext = obj.get(f"_{key}")
        if value is None and ext is None:
            return
        values = value if isinstance(value, list) else [value]
        exts = ext if isinstance(ext, list) else [ext]
        for i in range(max(len(values), len(exts))):
            v = values[i] if i < len(values) else None
            e = exts[i] if i < len(exts) else None
            if v is None and e is None:
                continue
            self.one(key, v, e, eldef, tc, depth)

    def one(self, key: str, v: Any, e: Any, eldef: ElementDef, tc: str, depth: int) -> None:
        if tc == "xhtml":
            self._open(depth)
            self.parts.append(_xhtml_normalise(str(v)))
            return
        if tc in ("Resource", "DomainResource"):
            if isinstance(v, dict):
                self._open(depth)
                self.parts.append(f"<{key}>")
                self.resource(v, depth + 1)
                self._open(depth)
                self.parts.append(f"</{key}>")
            return
        if self.model.is_primitive(tc):
            self._open(depth)
            attrs = ""
            ext = e if isinstance(e, dict) else {}
            if isinstance(ext.get("id"), str):
                attrs += f' id="{_escape_attr(ext["id"])}"'
            if v is not None and not isinstance(v, (dict, list)):
                attrs += f' value="{_escape_attr(_format_primitive(v))}"'
            if ext.get("extension"):
                self.parts.append(f"<{key}{attrs}>")
                self.children({"extension": ext["extension"]}, tc, depth + 1)
                self._open(depth)
                self.parts.append(f"</{key}>")
            else:
                self.parts.append(f"<{key}{attrs}/>")
            return
        if not isinstance(v, dict):
            return
        self._open(depth)
        node_path = eldef.child_node(tc)
        attrs = ""
        node = self.model.node(node_path)
        if node is not None:
            for name, child in node.elements.items():
                if child.xml_attr and isinstance(v.get(name), str):
                    attrs += f' {name}="{_escape_attr(v[name])}"'
        self.parts.append(f"<{key}{attrs}>")
        before = len(self.parts)
        self.children(v, node_path, depth + 1)
        if len(self.parts) == before:  # only attributes (an Extension with just a url)
            self.parts[-1] = f"<{key}{attrs}/>"
            return
        self._open(depth)
        self.parts.append(f"</{key}>")


def _xhtml_normalise(div: str) -> str:
    try:
        el = fromstring(div.encode("utf-8"), forbid_dtd=True, forbid_entities=True, forbid_external=True)
        return _xhtml_to_string(el)
    except Exception:  # noqa: BLE001 - a stored div that is not XHTML still renders, as text
        return f'<div xmlns="{XHTML_NS}">{_escape_text(div)}</div>'


def to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    """Render FHIR JSON as FHIR XML (unknown JSON properties are not rendered)."""
    writer = _Writer(get_model(), pretty)
    writer.parts.append('<?xml version="1.0" encoding="UTF-8"?>')
    writer.resource(resource, 0, root=True)
    return "".join(writer.parts).encode("utf-8")


def xhtml_canonical(div: str) -> str:
    """A canonical serialisation of a narrative div, for comparing narratives by content."""
    return _xhtml_normalise(div)


__all__ = ["parse_xml", "to_xml", "xhtml_canonical"]
