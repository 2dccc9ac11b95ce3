"""A transaction Bundle's database-free work (validation, index extraction), done before the transaction.

Validating a resource and extracting its search-index rows need no database and cost about a third of a
write. A caller with spare cores (the HL7v2 pipeline's worker processes) runs ``prepare_bundle`` while the
single database writer applies earlier Bundles; the transaction then only resolves ids and writes.

Every ``urn:uuid`` reference stands in as ``Type/ph.<uuid>`` while validating and extracting, so reference
rows (and ``resolve() is Type`` parameters) come out as they will for the real target; the transaction maps
each placeholder id to the id it resolved. A Bundle entry is prepared only when nothing else in it depends
on the transaction (conditional references, ``urn:`` references to other Bundles, ``urn:`` in narrative).
The transaction trusts a prepared entry only when its assumptions still hold (``trusted_validation``,
``fixed_index``); otherwise it does the work itself, so a stale preparation costs time, never correctness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from fhir_server.definitions import get_model
from fhir_server.search.extract import Extractor, IndexRows
from fhir_server.validation import validate_resource
from fhir_server.validation.bindings import BindingChecker, Terminology

CONDITIONAL_REF = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")  # a conditional reference: Type?query
PLACEHOLDER = "ph."  # a placeholder id: "ph." + the entry's uuid (a valid FHIR id no server assigns)

Lookup = tuple[str, str | None, str, bool | None]  # required binding: (value set, system, code, verdict used)


@dataclass
class PreparedEntry:
    validated: bool  # passed validation (with the verdicts in ``lookups``)
    index: IndexRows | None  # rows extracted with placeholder ids, or None when not prepared
    lookups: tuple[Lookup, ...] = ()


@dataclass
class PreparedBundle:
    registry_version: int  # the search parameters the rows were extracted with
    entries: list[PreparedEntry | None] = field(default_factory=list)
    conditional_references: list[str] | None = None  # every ``Type?query`` reference in the entries' resources


class _RecordingBindings(BindingChecker):
    """The shipped value sets, noting every answer so the server's terminology can confirm it later."""

    def __init__(self) -> None:
        super().__init__(get_model())
        self.lookups: set[Lookup] = set()

    def member(self, url: str, system: str | None, code: str) -> bool | None:
        verdict = super().member(url, system, code)
        self.lookups.add((url, system, code, verdict))
        return verdict


def _references(node: Any, out: list[str]) -> bool:
    """Collect every ``reference`` string; False when a narrative mentions a ``urn:`` (it would be rewritten)."""
    if isinstance(node, dict):
        ok = True
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                out.append(v)
            elif k == "div" and isinstance(v, str) and "urn:" in v:
                ok = False
            elif isinstance(v, dict | list):
                ok = _references(v, out) and ok
        return ok
    if isinstance(node, list):
        return all([_references(v, out) for v in node])
    return True


_CONTAINERS = (dict, list)  # a tuple: isinstance with a union type is slower in this hot walk


def replace_references(node: Any, mapping: dict[str, str]) -> Any:
    """``node`` with every ``reference`` in ``mapping`` (and quoted ``urn:`` links in narrative) replaced.

    Changed objects are copied, unchanged ones shared; the input is never modified. The transaction resolves
    its placeholders with it, and ``prepare_bundle`` puts the stand-ins in with it.
    """
    if isinstance(node, dict):
        out: dict[str, Any] | None = None
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                new = mapping.get(v, v)
            elif k == "div" and isinstance(v, str) and ("urn:uuid:" in v or "urn:oid:" in v):
                new = v
                for old, value in mapping.items():
                    if old.startswith("urn:"):
                        new = new.replace(f'"{old}"', f'"{value}"')
            elif isinstance(v, _CONTAINERS):
                new = replace_references(v, mapping)
            else:
                continue
            if new is not v:
                if out is None:
                    out = dict(node)
                out[k] = new
        return node if out is None else out
    if isinstance(node, list):
        copy: list[Any] | None = None
        for i, v in enumerate(node):
            if isinstance(v, _CONTAINERS):
                new = replace_references(v, mapping)
                if new is not v:
                    if copy is None:
                        copy = list(node)
                    copy[i] = new
        return node if copy is None else copy
    return node


def prepare_bundle(bundle: dict[str, Any], extractor: Extractor, *, validate: bool = True) -> PreparedBundle:
    """Validate and extract every POST/PUT entry of a transaction Bundle that does not depend on the database."""
    entries = bundle.get("entry") or []
    stand_ins: dict[str, str] = {}
    for e in entries:
        full, res = e.get("fullUrl"), e.get("resource")
        if isinstance(full, str) and full.startswith("urn:uuid:") and isinstance(res, dict) \
                and isinstance(res.get("resourceType"), str):
            stand_ins[full] = f"{res['resourceType']}/{PLACEHOLDER}{full[9:]}"
    conditional: list[str] = []
    out = PreparedBundle(extractor.registry.version, conditional_references=conditional)
    for e in entries:
        res = e.get("resource")
        method = str((e.get("request") or {}).get("method", "")).upper()
        refs: list[str] = []
        plain = _references(res, refs)  # (walks all of it either way)
        conditional.extend(r for r in refs if CONDITIONAL_REF.match(r))
        if not isinstance(res, dict) or method not in ("POST", "PUT") or not plain \
                or any(r.startswith("urn:") and r not in stand_ins or "?" in r for r in refs):
            out.entries.append(None)
            continue
        view = replace_references(res, stand_ins)  # no narrative mentions a urn: (checked above)
        validated: bool = False
        lookups: tuple[Lookup, ...] = ()
        if validate:
            bindings = _RecordingBindings()
            if method == "POST":
                subject, mode = {k: v for k, v in view.items() if k != "id"}, "create"
            else:
                full = str(e.get("fullUrl") or "")
                subject = {**view, "id": view.get("id") or PLACEHOLDER + full.rsplit(":", 1)[-1][:60]}
                mode = "update"
            issues = validate_resource(subject, mode=mode, bindings=bindings)
            validated = not any(i.severity in ("error", "fatal") for i in issues)
            lookups = tuple(bindings.lookups)
        out.entries.append(PreparedEntry(validated, extractor.extract(view), lookups))
    return out


def trusted_validation(entry: PreparedEntry | None, terminology: Terminology | None) -> bool:
    """True when the entry passed validation and the server's terminology gives every verdict it relied on."""
    if entry is None or not entry.validated:
        return False
    if entry.lookups and terminology is not None:
        checker = BindingChecker(get_model(), terminology)
        return all(checker.member(url, system, code) == verdict for url, system, code, verdict in entry.lookups)
    return True


def fixed_index(entry: PreparedEntry | None, mapping: dict[str, str]) -> IndexRows | None:
    """The entry's rows with every placeholder id replaced by the id the transaction resolved (None: unusable)."""
    if entry is None or entry.index is None:
        return None
    rows = entry.index
    fixed: list[tuple[int, str | None, str | None, str | None]] = []
    for ident, rtype, rid, url in rows.reference:
        if rid is not None and rid.startswith(PLACEHOLDER):
            target = mapping.get("urn:uuid:" + rid[len(PLACEHOLDER):])
            if target is None or "/" not in target:
                return None
            rtype, rid = target.split("/", 1)
        fixed.append((ident, rtype, rid, url))
    return replace(rows, reference=fixed)
