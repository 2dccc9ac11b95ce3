"""Reading FHIRPath Patch ``Parameters`` and turning their values into FHIR JSON.

A value is either a typed ``value[x]`` (``valueDate``, ``valueHumanName``...),
a nested ``part`` list naming the children of a complex or backbone value
(the "anonymous type" form), or a ``resource``. The element being written
decides the JSON key (a choice element ``deceased[x]`` becomes
``deceasedBoolean``), whether children are lists, and which types fit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from fhir_server.definitions import PRIMITIVE_JSON, ElementDef, TypeModel
from fhir_server.errors import bad_request, unprocessable

OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
_PART_NAMES = {"type", "path", "name", "value", "index", "source", "destination"}
_MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class PatchValue:
    """The ``value`` part as sent: exactly one of typed/parts/resource is set."""

    type_code: str | None = None
    typed: Any = None
    companion: Any = None
    parts: tuple[dict[str, Any], ...] | None = None
    resource: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    number: int
    type: str
    path: str
    name: str | None = None
    value: PatchValue | None = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def type_of_suffix(model: TypeModel, suffix: str) -> str | None:
    """``Date`` -> ``date``, ``CodeableConcept`` -> ``CodeableConcept``; None if no such type."""
    if suffix in model.types and not model.is_primitive(suffix):
        return suffix
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if model.is_primitive(lowered) else None


def _value_keys(part: dict[str, Any]) -> list[str]:
    return [k for k in part if k.startswith("value") and len(k) > 5 and k[5].isupper()]


def _json_kind_ok(type_code: str, value: Any) -> bool:
    expected: Any = PRIMITIVE_JSON.get(type_code, str)
    if isinstance(value, bool) and expected is not bool:
        return False
    return isinstance(value, expected)


def read_value(model: TypeModel, part: dict[str, Any], where: str) -> PatchValue | None:
    """The value carried by a Parameters part (None when it carries none)."""
    keys = _value_keys(part)
    has_parts = isinstance(part.get("part"), list) and bool(part.get("part"))
    has_resource = "resource" in part
    if len(keys) + has_parts + has_resource > 1:
        raise bad_request(f"{where} carries more than one value", code="structure")
    if keys:
        key = keys[0]
        type_code = type_of_suffix(model, key[5:])
        if type_code is None:
            raise bad_request(f"{where}: unknown value type {key!r}", code="structure")
        value, companion = part[key], part.get("_" + key)
        if model.is_primitive(type_code):
            if value is None and not isinstance(companion, dict):
                raise bad_request(f"{where}: {key} is null", code="structure")
            if value is not None and not _json_kind_ok(type_code, value):
                raise bad_request(f"{where}: {key} has the wrong JSON type for {type_code}", code="structure")
            if companion is not None and not isinstance(companion, dict):
                raise bad_request(f"{where}: _{key} must be an object", code="structure")
        elif not isinstance(value, dict):
            raise bad_request(f"{where}: {key} must be a JSON object", code="structure")
        return PatchValue(type_code=type_code, typed=copy.deepcopy(value), companion=copy.deepcopy(companion))
    if has_parts:
        parts = part["part"]
        if not all(isinstance(p, dict) for p in parts):
            raise bad_request(f"{where}: every part must be an object", code="structure")
        return PatchValue(parts=tuple(parts))
    if has_resource:
        res = part["resource"]
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise bad_request(f"{where}: resource must be a FHIR resource", code="structure")
        return PatchValue(resource=copy.deepcopy(res))
    return None


def _string_of(part: dict[str, Any], where: str) -> str:
    keys = _value_keys(part)
    if len(keys) != 1 or not isinstance(part[keys[0]], str):
        raise bad_request(f"{where} must have a string value (valueString/valueCode)", code="structure")
    return str(part[keys[0]])


def _int_of(part: dict[str, Any], where: str) -> int:
    keys = _value_keys(part)
    if len(keys) != 1 or isinstance(part[keys[0]], bool) or not isinstance(part[keys[0]], int):
        raise bad_request(f"{where} must have an integer value (valueInteger)", code="structure")
    return int(part[keys[0]])


def parse_operations(model: TypeModel, parameters: Any) -> list[Operation]:
    """Check a FHIRPath Patch Parameters resource; 400 for anything malformed."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise bad_request("A FHIRPath Patch body must be a Parameters resource", code="structure")
    params = parameters.get("parameter", [])
    if not isinstance(params, list):
        raise bad_request("Parameters.parameter must be an array", code="structure")
    ops: list[Operation] = []
    for n, param in enumerate(params, start=1):
        where = f"Patch operation {n}"
        if not isinstance(param, dict) or param.get("name") != "operation":
            raise bad_request(f"{where}: every parameter of a FHIRPath Patch must be named 'operation'",
                              code="structure")
        parts = param.get("part")
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise bad_request(f"{where} has no parts", code="structure")
        by_name: dict[str, dict[str, Any]] = {}
        for p in parts:
            pname = p.get("name")
            if pname not in _PART_NAMES:
                raise bad_request(f"{where}: unknown part {pname!r}", code="structure")
            if pname in by_name:
                raise bad_request(f"{where}: part {pname!r} is repeated", code="structure")
            by_name[pname] = p
        if "type" not in by_name or "path" not in by_name:
            raise bad_request(f"{where} needs the parts 'type' and 'path'", code="required")
        op_type = _string_of(by_name["type"], f"{where} type")
        if op_type not in OPERATION_TYPES:
            raise bad_request(f"{where}: unknown operation type {op_type!r} (expected one of "
                              f"{', '.join(OPERATION_TYPES)})", code="structure")
        path = _string_of(by_name["path"], f"{where} path")
        required = {"add": ("name", "value"), "insert": ("value", "index"), "replace": ("value",),
                    "move": ("source", "destination"), "delete": ()}[op_type]
        missing = [r for r in required if r not in by_name]
        if missing:
            raise bad_request(f"{where} ({op_type}) needs the part(s) {', '.join(missing)}", code="required")
        value = read_value(model, by_name["value"], f"{where} value") if "value" in by_name else None
        if "value" in required and value is None:
            raise bad_request(f"{where} ({op_type}): the value part carries no value", code="required")
        ops.append(Operation(
            number=n, type=op_type, path=path,
            name=_string_of(by_name["name"], f"{where} name") if "name" in by_name else None,
            value=value,
            index=_int_of(by_name["index"], f"{where} index") if "index" in by_name else None,
            source=_int_of(by_name["source"], f"{where} source") if "source" in by_name else None,
            destination=(_int_of(by_name["destination"], f"{where} destination")
                         if "destination" in by_name else None),
        ))
    return ops


# --- materializing a value for a given element -----------------------------------------------

def _is_a(model: TypeModel, type_code: str, wanted: str) -> bool:
    """Type ``type_code`` is ``wanted`` or derives from it (or the reverse: Quantity for Age)."""
    for a, b in ((type_code, wanted), (wanted, type_code)):
        seen = 0
        t: str | None = a
        while t is not None and seen < 16:
            if t == b:
                return True
            info = model.types.get(t)
            t = info.base if info else None
            seen += 1
    return False


def _fits(model: TypeModel, el: ElementDef, type_code: str) -> str | None:
    """The element type code that ``type_code`` fills, or None if it does not fit."""
    candidates = el.types
    if type_code in candidates:
        return type_code
    if model.is_primitive(type_code):
        json_kind = PRIMITIVE_JSON.get(type_code, str)
        for c in candidates:  # primitives are interchangeable when their JSON form is
            if model.is_primitive(c) and PRIMITIVE_JSON.get(c, str) == json_kind and not el.choice:
                return c
        if json_kind is int:
            for c in candidates:
                if c == "decimal" and not el.choice:
                    return c
        return None
    for c in candidates:
        if not model.is_primitive(c) and _is_a(model, type_code, c):
            return c
    return None


@dataclass(frozen=True, slots=True)
class Materialized:
    key: str
    value: Any
    companion: Any = None


def materialize(model: TypeModel, el: ElementDef, value: PatchValue, where: str,
                depth: int = 0) -> Materialized:
    """The JSON key and content that ``value`` takes as element ``el``; 422 if it does not fit."""
    if depth > _MAX_DEPTH:
        raise bad_request(f"{where}: the value is nested too deeply", code="structure")
    if value.type_code is not None:
        filled = _fits(model, el, value.type_code)
        if filled is None:
            raise unprocessable(f"{where}: a {value.type_code} value does not fit {el.path} "
                                f"(types: {', '.join(el.types) or 'BackboneElement'})")
        key = el.base_name + _upper_first(filled) if el.choice else el.name
        return Materialized(key, value.typed, value.companion)
    if value.resource is not None:
        if "Resource" not in el.types and value.resource.get("resourceType") not in el.types:
            raise unprocessable(f"{where}: {el.path} does not hold a resource")
        if not model.is_resource(str(value.resource.get("resourceType"))):
            raise unprocessable(f"{where}: unknown resource type {value.resource.get('resourceType')!r}")
        return Materialized(el.name, value.resource)
    assert value.parts is not None
    if el.choice:
        raise unprocessable(f"{where}: a value for the choice element {el.path} must be given as "
                            "value[x], not as parts")
    type_code = el.types[0] if el.types else "BackboneElement"
    if model.is_primitive(type_code) or type_code == "Resource":
        raise unprocessable(f"{where}: {el.path} is a {type_code}, it cannot be given as parts")
    node = model.node(el.child_node(type_code))
    if node is None:
        raise unprocessable(f"{where}: no definition of the children of {el.path}")
    out: dict[str, Any] = {}
    for sub in value.parts:
        pname = sub.get("name")
        sub_where = f"{where}.{pname}"
        if not isinstance(pname, str):
            raise bad_request(f"{where}: a part has no name", code="structure")
        child = element_named(node.elements, node.resolve, pname)
        if child is None:
            raise unprocessable(f"{where}: {el.path} has no element {pname!r}")
        child_el, forced_type = child
        sub_value = read_value(model, sub, sub_where)
        if sub_value is None:
            raise bad_request(f"{sub_where} carries no value", code="required")
        if forced_type is not None and sub_value.type_code not in (None, forced_type):
            raise unprocessable(f"{sub_where}: a {sub_value.type_code} value does not fit {pname}")
        m = materialize(model, child_el, sub_value, sub_where, depth + 1)
        put(out, child_el, m, sub_where)
    return Materialized(el.name, out)


def element_named(elements: dict[str, ElementDef], resolve: Any,
                  name: str) -> tuple[ElementDef, str | None] | None:
    """An element by its name (``deceased``/``deceased[x]``) or JSON key (``deceasedBoolean``)."""
    if name in elements:
        return elements[name], None
    if name + "[x]" in elements:
        return elements[name + "[x]"], None
    hit = resolve(name)
    if hit is not None:
        return hit[0], hit[1]
    return None


def _has_element(container: dict[str, Any], el: ElementDef) -> bool:
    if el.choice:
        base = el.base_name
        return any((k.lstrip("_").startswith(base) and len(k.lstrip("_")) > len(base)
                    and k.lstrip("_")[len(base)].isupper()) for k in container)
    return el.name in container or "_" + el.name in container


def put(container: dict[str, Any], el: ElementDef, m: Materialized, where: str) -> None:
    """Add ``m`` to ``container``: append when the element repeats, else set if not present."""
    if el.repeats:
        values = container.get(m.key)
        if values is None:
            values = container[m.key] = []
        if not isinstance(values, list):
            raise unprocessable(f"{where}: {el.path} is not an array in the resource")
        insert_item(container, m.key, len(values), m.value, m.companion)
        return
    if _has_element(container, el):
        raise unprocessable(f"{where}: {el.path} already has a value (it does not repeat; use replace)")
    container[m.key] = m.value
    if m.companion is not None:
        container["_" + m.key] = m.companion


# --- list edits that keep a primitive array and its ``_name`` companion aligned ---------------

def insert_item(container: dict[str, Any], key: str, index: int, value: Any, companion: Any) -> None:
    values: list[Any] = container[key]
    comp = container.get("_" + key)
    if companion is not None and not isinstance(comp, list):
        comp = container["_" + key] = [None] * len(values)
    if isinstance(comp, list):
        comp.extend([None] * (len(values) - len(comp)))
        comp.insert(index, companion)
    values.insert(index, value)


def pop_item(container: dict[str, Any], key: str, index: int) -> tuple[Any, Any]:
    values: list[Any] = container[key]
    comp = container.get("_" + key)
    companion = None
    if isinstance(comp, list):
        comp.extend([None] * (len(values) - len(comp)))
        companion = comp.pop(index)
    return values.pop(index), companion


def tidy(container: dict[str, Any], key: str) -> None:
    """Drop an emptied array and an all-null companion: FHIR JSON has no empty arrays."""
    if isinstance(container.get(key), list) and not container[key]:
        del container[key]
    comp = container.get("_" + key)
    if isinstance(comp, list) and all(c is None for c in comp):
        del container["_" + key]
