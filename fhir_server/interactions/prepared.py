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
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from fhir_server.definitions import get_model
from fhir_server.search.extract import Extractor, IndexRows, token_row
from fhir_server.validation import validate_resource
from fhir_server.validation.bindings import BindingChecker, Terminology

CONDITIONAL_REF = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")  # a conditional reference: Type?query
PLACEHOLDER = "ph."  # a placeholder id: "ph." + the entry's uuid (a valid FHIR id no server assigns)

Lookup = tuple[str, str | None, str, bool | None]  # required binding: (value set, system, code, verdict used)


_CONTAINERS = (dict, list)  # a tuple: isinstance with a union type is slower in these hot walks
RefPath = tuple[str | int, ...]  # where a ``reference`` string sits in a resource: keys and list indexes


@dataclass
class PreparedEntry:
    validated: bool  # passed validation (with the verdicts in ``lookups``)
    index: IndexRows | None  # rows extracted with placeholder ids, or None when not prepared
    lookups: tuple[Lookup, ...] = ()
    references: tuple[tuple[RefPath, str], ...] | None = None  # every ``reference`` in the resource, by path


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


def _references(node: Any, out: list[tuple[RefPath, str]], path: RefPath = ()) -> bool:
    """Collect every ``reference`` string with its path; False when a narrative mentions a ``urn:`` (it
    would be rewritten)."""
    if isinstance(node, dict):
        ok = True
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                out.append(((*path, k), v))
            elif k == "div" and isinstance(v, str) and "urn:" in v:
                ok = False
            elif isinstance(v, _CONTAINERS):
                ok = _references(v, out, (*path, k)) and ok
        return ok
    if isinstance(node, list):
        return all([_references(v, out, (*path, i)) for i, v in enumerate(node)])
    return True


def conditional_references(node: Any) -> list[str]:
    """Every ``Type?query`` reference in ``node`` (a resource, or a list of them)."""
    found: list[tuple[RefPath, str]] = []
    _references(node, found)
    return [r for _, r in found if CONDITIONAL_REF.match(r)]


def replace_references(node: Any, mapping: dict[str, str]) -> Any:
    """``node`` with every ``reference`` in ``mapping`` (and quoted ``urn:`` links in narrative) replaced.

    Changed objects are copied, unchanged ones shared; the input is never modified. The transaction resolves
    its placeholders with it, and ``prepare_bundle`` puts the stand-ins in with it.
    """
    if isinstance(node, dict):
        out: dict[str, Any] | None = None
        new: Any  # a string here, an object or list below (typed for the compiled build: fhir_server/compiled.py)
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


class PrepareMemo:
    """Prepared entries of resources that stand alone (no reference to another entry), by content.

    HL7v2 feeds repeat them in message after message (the PID's Patient, the attending Practitioner):
    with a memo a worker validates and indexes each version once. An entry is a function of the resource,
    the method and the search parameters (part of the key); binding verdicts are confirmed at write time.
    """

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], PreparedEntry] = OrderedDict()
        self.hits = 0

    def get(self, key: tuple[Any, ...]) -> PreparedEntry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def put(self, key: tuple[Any, ...], entry: PreparedEntry) -> None:
        self._entries[key] = entry
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)


def prepare_bundle(bundle: dict[str, Any], extractor: Extractor, *, validate: bool = True,
                   memo: PrepareMemo | None = None) -> PreparedBundle:
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
        found: list[tuple[RefPath, str]] = []
        plain = _references(res, found)  # (walks all of it either way)
        refs = [r for _, r in found]
        conditional.extend(r for r in refs if CONDITIONAL_REF.match(r))
        if not isinstance(res, dict) or method not in ("POST", "PUT") or not plain \
                or any(r.startswith("urn:") and r not in stand_ins or "?" in r for r in refs):
            out.entries.append(None)
            continue
        key = _memo_key(res, method, validate, extractor) if memo is not None \
            and not any(r in stand_ins for r in refs) else None
        if key is not None and memo is not None:
            known = memo.get(key)
            if known is not None:
                out.entries.append(known)
                continue
        view = _rewrite_paths(res, found, stand_ins)  # no narrative mentions a urn: (checked above)
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
        prepared = PreparedEntry(validated, extractor.extract(view), lookups, tuple(found))
        if key is not None and memo is not None:
            memo.put(key, prepared)
        out.entries.append(prepared)
    return out


def _memo_key(res: dict[str, Any], method: str, validate: bool, extractor: Extractor) -> tuple[Any, ...] | None:
    try:
        return extractor.registry.version, validate, method, orjson.dumps(res, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):  # not plain JSON (a client's odd number): not remembered
        return None


def resolved_entry(entry: dict[str, Any], mapping: dict[str, str], prepared: PreparedEntry | None) -> dict[str, Any]:
    """``replace_references(entry, mapping)``; for a prepared entry only along the paths it recorded.

    A prepared resource's narrative mentions no ``urn:`` and its references were all found ahead, so
    rewriting them by path gives the same result without walking the whole resource again.
    """
    resource = entry.get("resource")
    if prepared is None or prepared.references is None or not isinstance(resource, dict):
        return replace_references(entry, mapping)
    rewritten = _rewrite_paths(resource, prepared.references, mapping)
    return entry if rewritten is resource else {**entry, "resource": rewritten}


def _rewrite_paths(resource: dict[str, Any], references: tuple[tuple[RefPath, str], ...] | list[tuple[RefPath, str]],
                   mapping: dict[str, str]) -> dict[str, Any]:
    """``resource`` with the references at these paths mapped; copies only the containers on changed paths."""
    root: dict[str, Any] | None = None
    fresh: set[int] = set()  # containers already copied
    for path, ref in references:
        new = mapping.get(ref)
        if new is None or new == ref:
            continue
        if root is None:
            root = dict(resource)
            fresh.add(id(root))
        node: Any = root
        for key in path[:-1]:
            child = node[key]
            if id(child) not in fresh:
                child = dict(child) if isinstance(child, dict) else list(child)
                node[key] = child
                fresh.add(id(child))
            node = child
        node[path[-1]] = new
    return resource if root is None else root


def with_token_value(entry: PreparedEntry, system: str, old: str, new: str) -> PreparedEntry | None:
    """``entry`` as if its resource had ``new`` where it has the identifier value ``system|old``: its
    ``system|old`` token rows rebuilt for ``new``; None (extract again) when other rows may hold ``old``
    (strings, text, a typed identifier's key, composites' hashes)."""
    rows = entry.index
    if rows is None:
        return entry
    if old in rows.content or any(old in r for r in rows.text) or any(old in r[1:] for r in rows.string) \
            or rows.composite or any(r[3] is None and str(r[4]).endswith("|" + old) for r in rows.token):
        return None
    token = [token_row(r[0], system, new) if r[3] == system and r[4] == old else r for r in rows.token]
    return replace(entry, index=replace(rows, token=token))


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
    fixed: list[tuple[int, str | None, str | None, str | None]] | None = None
    for k, (ident, rtype, rid, url) in enumerate(rows.reference):
        if rid is not None and rid.startswith(PLACEHOLDER):
            target = mapping.get("urn:uuid:" + rid[len(PLACEHOLDER):])
            if target is None or "/" not in target:
                return None
            rtype, rid = target.split("/", 1)
            if fixed is None:
                fixed = list(rows.reference)
            fixed[k] = (ident, rtype, rid, url)
    return rows if fixed is None else replace(rows, reference=fixed)
