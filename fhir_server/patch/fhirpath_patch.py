"""FHIRPath Patch (fhirpatch.html, http.html#patch): a Parameters resource of operations.

Each operation's ``path`` is evaluated with fhirpathpy on the current state of
a working copy (so later operations see earlier ones), mapped to JSON
locations (see ``locate``), and edited in place. Element definitions from the
shipped R4 model (``fhir_server.definitions``) decide JSON keys, list vs single
and whether a value fits, so no FHIR package is needed at run time.

Errors: a malformed Parameters or FHIRPath is a 400; an operation that cannot
apply to this resource (nothing or several elements matched, wrong type, index
out of range, an element already present) is a 422.
"""

from __future__ import annotations

import copy
from typing import Any

from fhir_server.definitions import ElementDef, TypeModel, get_model
from fhir_server.errors import unprocessable
from fhir_server.patch.locate import Location, get_at, locate, split_last_member
from fhir_server.patch.values import (
    Materialized,
    Operation,
    element_named,
    insert_item,
    materialize,
    parse_operations,
    pop_item,
    put,
    tidy,
)


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """Apply a FHIRPath Patch Parameters resource to a copy of ``resource``."""
    model = get_model()
    operations = parse_operations(model, parameters)
    doc = copy.deepcopy(resource)
    for op in operations:
        _APPLY[op.type](model, doc, op)
    return doc


def _where(op: Operation) -> str:
    return f"Patch operation {op.number} ({op.type} at {op.path})"


def node_path_of(model: TypeModel, root: dict[str, Any], loc: Location) -> tuple[str, ElementDef | None]:
    """The type-model node whose children describe the value at ``loc`` and the element there."""
    path = str(root.get("resourceType", ""))
    cur: Any = root
    el: ElementDef | None = None
    for step in loc:
        if isinstance(step, int):
            cur = cur[step]
        else:
            node = model.node(path)
            # ``_given``: a primitive's id/extension holder, described by the primitive type
            hit = node.resolve(step[1:] if step.startswith("_") else step) if node else None
            if hit is None:
                raise unprocessable(f"The resource has an element {step!r} that {path} does not define")
            el, type_code = hit
            path = el.child_node(type_code)
            cur = cur[step]
        if isinstance(cur, dict) and isinstance(cur.get("resourceType"), str) and el is not None \
                and not el.has_children and not el.content_ref and not model.is_primitive(path):
            path = cur["resourceType"]  # a contained / entry resource starts a new tree
    return path, el


def _one(doc: dict[str, Any], op: Operation, verb: str) -> Location:
    locs = locate(doc, op.path)
    if not locs:
        raise unprocessable(f"No content found at {op.path} when {verb}")
    if len(locs) > 1:
        raise unprocessable(f"{_where(op)}: the path matches {len(locs)} elements, it must match one")
    return locs[0]


def _split(loc: Location) -> tuple[Location, str, int | None]:
    """(location of the owning object, JSON key, list index or None)."""
    if loc and isinstance(loc[-1], int):
        return loc[:-2], str(loc[-2]), loc[-1]
    return loc[:-1], str(loc[-1]), None


def _add(model: TypeModel, doc: dict[str, Any], op: Operation) -> None:
    loc = _one(doc, op, "adding")
    container = get_at(doc, loc)
    if not isinstance(container, dict):
        raise unprocessable(f"{_where(op)}: the path selects a primitive value; content can only be "
                            "added to a complex element")
    node_path, _ = node_path_of(model, doc, loc)
    node = model.node(node_path)
    assert op.name is not None and op.value is not None
    hit = element_named(node.elements, node.resolve, op.name) if node else None
    if hit is None:
        raise unprocessable(f"{_where(op)}: {node_path} has no element named {op.name!r}")
    el, forced = hit
    if forced is not None and op.value.type_code not in (None, forced):
        raise unprocessable(f"{_where(op)}: a {op.value.type_code} value does not fit {op.name}")
    put(container, el, materialize(model, el, op.value, _where(op)), _where(op))


def _list_of(model: TypeModel, doc: dict[str, Any], op: Operation,
             verb: str) -> tuple[dict[str, Any], str, ElementDef]:
    """The object and key of the list that ``op.path`` names (all of its items, or none)."""
    locs = locate(doc, op.path)
    if not locs:
        owner = _empty_list_owner(model, doc, op)
        if owner is None:
            raise unprocessable(f"No content found at {op.path} when {verb}")
        return owner
    if any(not loc for loc in locs):
        raise unprocessable(f"{_where(op)}: the path selects the resource itself, not a list")
    owners = {_split(loc)[:2] for loc in locs}
    if len(owners) != 1 or any(_split(loc)[2] is None for loc in locs):
        raise unprocessable(f"{_where(op)}: the path must select the items of one list")
    owner_loc, key = owners.pop()
    container = get_at(doc, owner_loc)
    if len(locs) != len(container[key]):
        raise unprocessable(f"{_where(op)}: the path selects only some items of the list {key!r}; "
                            "it must name the whole list")
    _, el = node_path_of(model, doc, (*owner_loc, key))
    assert el is not None
    return container, key, el


def _empty_list_owner(model: TypeModel, doc: dict[str, Any],
                      op: Operation) -> tuple[dict[str, Any], str, ElementDef] | None:
    """For ``Patient.identifier`` with no identifier yet: the Patient and the element."""
    split = split_last_member(op.path)
    if split is None:
        return None
    parent, name, index = split
    if index is not None:
        return None
    locs = locate(doc, parent)
    if len(locs) != 1 or not isinstance(get_at(doc, locs[0]), dict):
        return None
    node_path, _ = node_path_of(model, doc, locs[0])
    node = model.node(node_path)
    el = node.elements.get(name) if node else None
    if el is None or not el.repeats:
        return None
    container = get_at(doc, locs[0])
    if container.get(name):
        return None
    container[name] = []
    return container, name, el


def _insert(model: TypeModel, doc: dict[str, Any], op: Operation) -> None:
    container, key, el = _list_of(model, doc, op, "inserting")
    assert op.index is not None and op.value is not None
    if not 0 <= op.index <= len(container[key]):
        tidy(container, key)
        raise unprocessable(f"{_where(op)}: index {op.index} is outside the list (size "
                            f"{len(container.get(key, []))})")
    m: Materialized = materialize(model, el, op.value, _where(op))
    insert_item(container, key, op.index, m.value, m.companion)


def _move(model: TypeModel, doc: dict[str, Any], op: Operation) -> None:
    container, key, _ = _list_of(model, doc, op, "moving")
    assert op.source is not None and op.destination is not None
    size = len(container[key])
    for label, i in (("source", op.source), ("destination", op.destination)):
        if not 0 <= i < size:
            tidy(container, key)
            raise unprocessable(f"{_where(op)}: {label} index {i} is outside the list (size {size})")
    value, companion = pop_item(container, key, op.source)
    insert_item(container, key, op.destination, value, companion)
    tidy(container, key)


def _delete(model: TypeModel, doc: dict[str, Any], op: Operation) -> None:
    locs = locate(doc, op.path)
    if not locs:
        return  # "delete ... (if found)": nothing to do
    if len(locs) > 1:
        raise unprocessable(f"{_where(op)}: the path matches {len(locs)} elements; only a single "
                            "element can be deleted")
    if not locs[0]:
        raise unprocessable(f"{_where(op)}: the resource itself cannot be deleted by a patch")
    owner_loc, key, index = _split(locs[0])
    container = get_at(doc, owner_loc)
    if index is None:
        container.pop(key, None)
        container.pop("_" + key, None)
    else:
        pop_item(container, key, index)
        tidy(container, key)
    _prune(doc, owner_loc)


def _prune(doc: dict[str, Any], loc: Location) -> None:
    """Remove objects a delete left empty (FHIR JSON has no empty objects or arrays)."""
    while loc and get_at(doc, loc) == {}:
        owner_loc, key, index = _split(loc)
        container = get_at(doc, owner_loc)
        if index is None:
            container.pop(key, None)
        else:
            pop_item(container, key, index)
            tidy(container, key)
        loc = owner_loc


def _replace(model: TypeModel, doc: dict[str, Any], op: Operation) -> None:
    loc = _one(doc, op, "replacing")
    if not loc:
        raise unprocessable(f"{_where(op)}: the resource itself cannot be replaced by a patch")
    assert op.value is not None
    _, el = node_path_of(model, doc, loc)
    assert el is not None
    m = materialize(model, el, op.value, _where(op))
    owner_loc, key, index = _split(loc)
    container = get_at(doc, owner_loc)
    if index is None:
        container.pop(key, None)
        container.pop("_" + key, None)
        container[m.key] = m.value
        if m.companion is not None:
            container["_" + m.key] = m.companion
    else:
        pop_item(container, key, index)
        insert_item(container, key, index, m.value, m.companion)
        tidy(container, key)


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}
