"""``_summary`` and ``_elements`` (search.html#summary, search.html#elements).

Both return a new dict (the stored resource is never mutated) tagged
``SUBSETTED`` so a client cannot mistake it for the full resource and write it
back. ``_summary=count`` is a search concern and handled by the search code.
"""

from __future__ import annotations

import copy
from typing import Any

from fhir_server.definitions import TypeModel, get_model
from fhir_server.errors import bad_request

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
SUMMARY_MODES = ("true", "text", "data", "false", "count")


def _tag(res: dict[str, Any]) -> dict[str, Any]:
    meta = dict(res["meta"]) if isinstance(res.get("meta"), dict) else {}
    old: list[Any] = meta["tag"] if isinstance(meta.get("tag"), list) else []
    tags = [t for t in old if not (isinstance(t, dict) and t.get("code") == "SUBSETTED")]
    tags.append(dict(SUBSETTED))
    meta["tag"] = tags
    res["meta"] = meta
    return res


def _summary_of(obj: dict[str, Any], node_path: str, model: TypeModel) -> dict[str, Any]:
    node = model.node(node_path)
    if node is None:
        return copy.deepcopy(obj)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "resourceType":
            out[key] = value
            continue
        hit = node.resolve(key[1:] if key.startswith("_") else key)
        if hit is None:
            continue
        eldef, tc = hit
        if not (eldef.summary or eldef.xml_attr):
            continue
        if key.startswith("_") or model.is_primitive(tc) or tc in ("Resource", "xhtml"):
            out[key] = copy.deepcopy(value)
            continue
        child = eldef.child_node(tc)
        if isinstance(value, list):
            out[key] = [_summary_of(v, child, model) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, dict):
            out[key] = _summary_of(value, child, model)
    return out


def _mandatory_top(res: dict[str, Any], model: TypeModel, extra: set[str],
                   modifiers: bool = True) -> dict[str, Any]:
    """Keep id/meta/resourceType, mandatory (and modifier) top-level elements plus ``extra`` names."""
    node = model.node(res.get("resourceType", ""))
    out: dict[str, Any] = {}
    for key, value in res.items():
        name = key[1:] if key.startswith("_") else key
        if key == "resourceType" or name in ("id", "meta"):
            out[key] = copy.deepcopy(value)
            continue
        hit = node.resolve(name) if node else None
        if hit is None:
            continue
        eldef = hit[0]
        if eldef.min > 0 or (modifiers and eldef.modifier) or name in extra or eldef.base_name in extra:
            out[key] = copy.deepcopy(value)
    return out


def apply_summary(resource: dict[str, Any], mode: str | None) -> dict[str, Any]:
    """Apply ``_summary``; ``false``/``None`` return the resource unchanged."""
    if mode is None or mode == "false":
        return resource
    if mode not in SUMMARY_MODES:
        raise bad_request(f"Invalid _summary value '{mode}' (expected one of {', '.join(SUMMARY_MODES)})",
                          code="value")
    if mode == "count":
        return resource
    model = get_model()
    rtype = str(resource.get("resourceType", ""))
    if mode == "true":
        out = _summary_of(resource, rtype, model)
    elif mode == "text":
        out = _mandatory_top(resource, model, {"text"}, modifiers=False)
    else:  # data
        out = {k: copy.deepcopy(v) for k, v in resource.items() if k not in ("text", "_text")}
    return _tag(out)


def apply_elements(resource: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    """Apply ``_elements``: the named top-level elements plus what must never be dropped.

    Names may be given as ``Patient.name`` or ``name``; a choice element is named
    without its type suffix (``value`` keeps ``valueQuantity``).
    """
    rtype = str(resource.get("resourceType", ""))
    wanted: set[str] = set()
    for item in elements:
        for name in item.split(","):
            name = name.strip()
            if name.startswith(rtype + "."):
                name = name[len(rtype) + 1:]
            name = name.split(".", 1)[0].removesuffix("[x]")
            if name:
                wanted.add(name)
    if not wanted:
        return resource
    return _tag(_mandatory_top(resource, get_model(), wanted))


__all__ = ["SUBSETTED", "apply_elements", "apply_summary"]
