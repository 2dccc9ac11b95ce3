"""Compile SearchParameter FHIRPath expressions into simple navigation steps.

Most R4 search expressions are paths with ``|``, ``as``/``ofType``,
``where(resolve() is X)``, ``where(field='v')`` and ``extension('url')``.
Those compile, using the element types of the StructureDefinitions, into steps
that walk the JSON directly (and tell each value's FHIR type); anything else
keeps its expression and is evaluated by fhirpathpy.
"""

from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data")

Elements = dict[str, dict[str, list[str]]]  # type -> relative element path -> type codes


@lru_cache(maxsize=1)
def element_types() -> tuple[Elements, frozenset[str]]:
    with gzip.open(DATA / "element-types.json.gz", "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return data["types"], frozenset(data["resources"])


def child(types: Elements, owner: str, rel_path: str, name: str) -> list[tuple[str, str, str]]:
    """Candidates (json key, element type, new relative path) for stepping into ``name``."""
    paths = types.get(owner, {})
    base = f"{rel_path}.{name}" if rel_path else name
    out: list[tuple[str, str, str]] = []
    if base in paths:
        for code in paths[base]:
            out.append((name, code, base))
        return out
    choice = base + "[x]"
    if choice in paths:
        for code in paths[choice]:
            out.append((name + code[0].upper() + code[1:], code, choice))
    return out


STEP_RE = re.compile(r"""
    (?P<field>[A-Za-z_][A-Za-z0-9_]*)
    | \.as\((?P<as>\w+)\)
    | \s+as\s+(?P<as2>\w+)
    | \.ofType\((?P<oftype>\w+)\)
    | \.where\(resolve\(\)\s+is\s+(?P<resolve>\w+)\)
    | \.where\((?P<wfield>\w+)\s*=\s*'(?P<wvalue>[^']*)'\)
    | \.extension\('(?P<ext>[^']*)'\)
    | \[(?P<index>\d+)\]
    | \.first\(\)(?P<first>)
    | \.(?P<dot>)
    """, re.VERBOSE)


def compile_part(part: str, types: Elements | None = None) -> dict[str, Any] | None:
    """Compile ``Type.a.b...`` into steps; None when a construct is not supported."""
    if types is None:
        types = element_types()[0]
    expr = part.strip()
    if expr.startswith("(") and expr.endswith(")") and expr.count("(") == 1:
        expr = expr[1:-1].strip()
    elif expr.startswith("("):
        close = expr.find(")")
        inner, rest = expr[1:close], expr[close + 1:]
        expr = inner + rest
    m = re.match(r"(\w+)", expr)
    if not m:
        return None
    root = m.group(1)
    if root not in types and root not in ("Resource", "DomainResource"):
        return None
    pos = m.end()
    # Each candidate: (owner type, rel path, current type) — multiple when a choice is not narrowed.
    current: list[tuple[str, str, str]] = [(root, "", root)]
    steps: list[dict[str, Any]] = []
    while pos < len(expr):
        sm = STEP_RE.match(expr, pos)
        if not sm or sm.end() == pos:
            return None
        pos = sm.end()
        g = sm.groupdict()
        if g["dot"] is not None and g["field"] is None:
            continue
        if g["field"]:
            name = g["field"]
            cands: list[dict[str, str]] = []
            new: list[tuple[str, str, str]] = []
            for owner, rel, cur in current:
                if cur in ("BackboneElement", "Element") or cur == owner:
                    found = child(types, owner, rel, name)
                    if not found and root in ("Resource", "DomainResource"):
                        found = child(types, "DomainResource", rel, name) or child(types, "Resource", rel, name)
                else:
                    found = [(k, t, p) for k, t, p in child(types, cur, "", name)]
                    owner = cur
                for key, code, newrel in found:
                    cands.append({"key": key, "type": code})
                    if code in ("BackboneElement", "Element") and owner in types:
                        new.append((owner, newrel, code))
                    else:
                        new.append((code, "", code))
            if not cands:
                return None
            steps.append({"op": "field", "cands": cands})
            current = new
        elif g["as"] or g["as2"] or g["oftype"]:
            t = g["as"] or g["as2"] or g["oftype"]
            last = steps[-1] if steps else None
            if not last or last["op"] != "field":
                return None
            keep = [c for c in last["cands"] if c["type"].lower() == t.lower()]
            if not keep:
                return None
            last["cands"] = keep
            current = [c for c in current if c[2].lower() == t.lower()] or [(t, "", t)]
        elif g["resolve"]:
            steps.append({"op": "resolve_is", "type": g["resolve"]})
        elif g["wfield"]:
            steps.append({"op": "where_eq", "field": g["wfield"], "value": g["wvalue"]})
        elif g["ext"] is not None and g["ext"] != "":
            steps.append({"op": "extension", "url": g["ext"]})
            current = [("Extension", "", "Extension")]
        elif g["index"] is not None:
            steps.append({"op": "index", "n": int(g["index"])})
        elif g["first"] is not None:
            steps.append({"op": "index", "n": 0})
        else:
            return None
    final = sorted({c[2] for c in current})
    return {"resource": root, "steps": steps, "types": final}


