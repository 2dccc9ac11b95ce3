"""The terminology service: one object the server, the validator and search share.

It owns its tables (``terminology.schema``) in the engine it is given, which may be
the server's own database (SQLite or PostgreSQL) or a separate one.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, delete, select
from sqlalchemy.pool import StaticPool

from terminology import loader, store
from terminology.conceptmap import translate as _translate
from terminology.errors import TerminologyError, UnknownCode, UnknownCodeSystem
from terminology.index import CodeSystemInfo, Concept, TerminologyIndex
from terminology.schema import code_system, concept_map, metadata, value_set
from terminology.valueset import Item, ValueSetEngine

JsonDict = dict[str, Any]


def make_engine(url: str) -> Engine:
    if url in ("sqlite://", "sqlite:///:memory:"):
        return create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    return create_engine(url)


def _create_all(engine: Engine, tables: MetaData) -> None:
    tables.create_all(engine)


class TerminologyService:
    def __init__(self, engine_or_url: Engine | str, *,
                 create_tables: Callable[[Engine, MetaData], None] | None = None) -> None:
        """``create_tables``: how to create our tables on a shared database (the server passes the core's,
        which serialises processes starting together); plain ``create_all`` otherwise."""
        self.engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        (create_tables or _create_all)(self.engine, metadata)
        self.index = TerminologyIndex(self.engine)
        self.valuesets = ValueSetEngine(self.index)

    def invalidate(self) -> None:
        """Drop in-process caches (after loads, here or in another process)."""
        self.index.invalidate()
        self.valuesets.invalidate()

    # -- loading -------------------------------------------------------------------------
    def load_package(self, spec: str | os.PathLike[str], progress: loader.Progress | None = None,
                     ) -> dict[str, int]:
        try:
            return loader.load_package(self.engine, spec, progress)
        finally:
            self.invalidate()

    def load_resources(self, resources: Iterable[JsonDict], origin: str | None = None) -> dict[str, int]:
        try:
            return loader.load_resources(self.engine, resources, origin=origin)
        finally:
            self.invalidate()

    def remove_origin(self, origin: str) -> None:
        """Forget what was synced from one FHIR store resource (``CodeSystem/<id>``...)."""
        with self.engine.begin() as conn:
            cs_ids = conn.execute(select(code_system.c.id).where(code_system.c.origin == origin)).scalars()
            for cs_id in cs_ids.all():
                store.delete_code_system(conn, cs_id)
            conn.execute(delete(value_set).where(value_set.c.origin == origin))
            cm_ids = conn.execute(select(concept_map.c.id).where(concept_map.c.origin == origin)).scalars()
            for cm_id in cm_ids.all():
                store.delete_concept_map(conn, cm_id)
        self.invalidate()

    def ensure_core(self, background: bool = True) -> Any:
        """Load the bundled core R4 terminology if this database has never had it."""
        return loader.ensure_core(self.engine, on_done=self.invalidate, background=background)

    def remove(self, resource_type: str, url: str, version: str | None = None) -> None:
        with self.engine.begin() as conn:
            if resource_type == "CodeSystem":
                q = select(code_system.c.id).where(code_system.c.url == url)
                if version is not None:
                    q = q.where(code_system.c.version == version)
                for cs_id in conn.execute(q).scalars().all():
                    store.delete_code_system(conn, cs_id)
            elif resource_type == "ValueSet":
                cond = value_set.c.url == url
                if version is not None:
                    cond = cond & (value_set.c.version == version)
                conn.execute(delete(value_set).where(cond))
            elif resource_type == "ConceptMap":
                q = select(concept_map.c.id).where(concept_map.c.url == url)
                if version is not None:
                    q = q.where(concept_map.c.version == version)
                for cm_id in conn.execute(q).scalars().all():
                    store.delete_concept_map(conn, cm_id)
        self.invalidate()

    # -- CodeSystem ----------------------------------------------------------------------
    def code_system(self, system: str, version: str | None = None) -> CodeSystemInfo:
        cs = self.index.code_system(system, version)
        if cs is None or cs.content == "not-present":
            raise UnknownCodeSystem(system, version)
        return cs

    def lookup(self, system: str, code: str, version: str | None = None,
               display_language: str | None = None) -> JsonDict:
        """$lookup: display, definition, designations, properties, parents and children."""
        cs = self.code_system(system, version)
        c = self.index.concept(cs, code)
        if c is None:
            raise UnknownCode(f"Code {code!r} is not in code system {system}")
        desigs = self.index.designations(cs, [c.seq]).get(c.seq, [])
        display = _localised(c.display, desigs, display_language)
        props: list[JsonDict] = [{"code": "inactive", "type": "boolean", "value": "true" if c.inactive
                                  else "false"}]
        if c.abstract:
            props.append({"code": "notSelectable", "type": "boolean", "value": "true"})
        for p in self.index.properties(cs, c.seq):
            if p["code"] in ("parent", "child", "inactive", "notSelectable"):
                continue
            props.append({"code": p["code"], "type": p["value_type"], "value": p["value"],
                          "system": p["value_system"]})
        related = (("parent", self.index.parents(cs, c.seq)), ("child", self.index.children(cs, c.seq)))
        for rel, concepts in related:
            for r in concepts:
                props.append({"code": rel, "type": "code", "value": r.code, "description": r.display})
        return {"name": cs.name or cs.url, "system": cs.url, "version": cs.version or None, "code": c.code,
                "display": display, "definition": c.definition, "abstract": c.abstract,
                "inactive": c.inactive, "designation": desigs, "property": props}

    def validate_code_in_system(self, system: str, code: str, display: str | None = None,
                                version: str | None = None) -> JsonDict:
        cs = self.index.code_system(system, version)
        if cs is None or cs.content == "not-present":
            return {"result": False, "message": str(UnknownCodeSystem(system, version)),
                    "system": system, "code": code, "unknown_system": True}
        c = self.index.concept(cs, code)
        if c is None:
            if not cs.enumerable:
                return {"result": True, "system": system, "code": code,
                        "message": f"Code system {system} is only partially known here ({cs.content})"}
            return {"result": False, "system": system, "code": code,
                    "message": f"Unknown code {code!r} in code system {system}"}
        return self._check_display(cs, c.code, c.display, c.seq, display, c.inactive)

    def _check_display(self, cs: CodeSystemInfo, code: str, known: str | None, seq: int,
                       display: str | None, inactive: bool) -> JsonDict:
        out: JsonDict = {"result": True, "system": cs.url, "code": code, "display": known}
        if cs.version:
            out["version"] = cs.version
        if inactive:
            out["inactive"] = True
        if display and known and display.strip().lower() != known.strip().lower():
            alts = {d["value"].strip().lower() for d in self.index.designations(cs, [seq]).get(seq, [])}
            if display.strip().lower() not in alts:
                out["result"] = False
                out["message"] = f"Display {display!r} is not valid for code {code!r} (expected {known!r})"
        return out

    def subsumes(self, system: str, a: str, b: str, version: str | None = None) -> str:
        """$subsumes outcome of A against B: equivalent | subsumes | subsumed-by | not-subsumed."""
        cs = self.code_system(system, version)
        ca, cb = self.index.concept(cs, a), self.index.concept(cs, b)
        for code, c in ((a, ca), (b, cb)):
            if c is None:
                raise TerminologyError(f"Code {code!r} is not in code system {system}", 422, "not-found")
        assert ca is not None and cb is not None
        if ca.seq == cb.seq:
            return "equivalent"
        if self.index.is_descendant(cs, ca.seq, cb.seq):
            return "subsumes"
        if self.index.is_descendant(cs, cb.seq, ca.seq):
            return "subsumed-by"
        return "not-subsumed"

    def codes_below(self, system: str, code: str) -> set[str]:
        """The code and all its descendants (search ``:below``); just the code if unknown here."""
        return self._related(system, code, below=True)

    def codes_above(self, system: str, code: str) -> set[str]:
        return self._related(system, code, below=False)

    def knows_code(self, system: str, code: str) -> bool:
        """True when ``code`` is a concept of a code system loaded here (so ``:below``/``:above`` can use
        its hierarchy)."""
        return self._concept(system, code) is not None

    def _concept(self, system: str, code: str) -> tuple[CodeSystemInfo, Concept] | None:
        cs = self.index.code_system(system)
        c = self.index.concept(cs, code) if cs is not None else None
        return None if cs is None or c is None else (cs, c)

    def _related(self, system: str, code: str, below: bool) -> set[str]:
        found = self._concept(system, code)
        if found is None:
            return {code}
        cs, c = found
        seqs = self.index.descendants(cs, c.seq) if below else self.index.ancestors(cs, c.seq)
        return {x.code for x in self.index.concepts(cs, seqs)} | {c.code}

    # -- ValueSet --------------------------------------------------------------------------
    def in_value_set(self, valueset_url: str, system: str, code: str, version: str | None = None,
                     ) -> bool | None:
        """Membership for bindings and ``:in``; None when the value set or a needed code system is unknown."""
        if not self.core_ready():
            return None  # a half-loaded terminology must not reject valid codes
        try:
            vs = self.valuesets.resolve(valueset_url)
            return self.valuesets.contains(vs, system, code, version)
        except TerminologyError:
            return None

    def core_ready(self) -> bool:
        """False only while the core R4 terminology is being loaded (by any process): a half-loaded value set
        must not reject valid codes. Never loaded, loaded or failed all count as ready."""
        if getattr(self, "_core_ready", False):
            return True
        import time

        now = time.monotonic()
        if now - getattr(self, "_core_checked", 0.0) < 1.0:
            return False
        self._core_checked = now
        if loader.package_status(self.engine, loader.CORE_NAME, loader.CORE_VERSION) == "loading":
            if loader.claim_is_stale(self.engine, loader.CORE_NAME, loader.CORE_VERSION):
                self.ensure_core(background=True)  # its loader died mid-load: this process takes over
            return False
        self._core_ready = True
        self.invalidate()
        return True

    def validate_code(self, url_or_valueset: str | JsonDict | None, system: str | None, code: str,
                      display: str | None = None, version: str | None = None) -> JsonDict:
        """$validate-code against a value set (URL or resource) or, given None, the code system itself."""
        if url_or_valueset is None:
            if not system:
                raise TerminologyError("A system is required to validate a code without a value set")
            return self.validate_code_in_system(system, code, display, version)
        vs = self.valuesets.resolve(url_or_valueset)
        vs_name = vs.get("url") or "the value set"
        if not system:
            system = self._infer_system(vs, code)
            if system is None:
                return {"result": False, "code": code,
                        "message": f"No system given and code {code!r} is not in {vs_name}"}
        member = self.valuesets.contains(vs, system, code, version)
        if member is None:
            return {"result": False, "system": system, "code": code, "unknown": True,
                    "message": f"Cannot tell whether {system}#{code} is in {vs_name}: it needs a code "
                               "system this server does not have"}
        if not member:
            return {"result": False, "system": system, "code": code,
                    "message": f"The code {system}#{code} is not in the value set {vs_name}"}
        cs = self.index.code_system(system, version)
        c = self.index.concept(cs, code) if cs is not None else None
        if cs is None or c is None:
            return {"result": True, "system": system, "code": code, "display": display}
        return self._check_display(cs, c.code, c.display, c.seq, display, c.inactive)

    def _infer_system(self, vs: JsonDict, code: str) -> str | None:
        systems = {i.get("system") for i in vs.get("compose", {}).get("include", []) if i.get("system")}
        for s in sorted(systems):
            if self.valuesets.contains(vs, s, code):
                return s
        return None

    def expand(self, url_or_valueset: str | JsonDict, filter: str | None = None, count: int | None = None,
               offset: int | None = None, active_only: bool | None = None,
               display_language: str | None = None, include_designations: bool = False) -> JsonDict:
        """$expand: a copy of the ValueSet with ``expansion`` (flat, in compose order).

        Codes picked up by a filter or a whole-system include are left out when they are
        abstract (``notSelectable`` groupers) or inactive (retired/deprecated), as the
        reference expansions of the FHIR specification do; ``active_only=False`` keeps the
        inactive ones, ``True`` also drops inactive codes that the value set lists explicitly.
        """
        vs = self.valuesets.resolve(url_or_valueset)
        items = [i for i in self.valuesets.expand_items(vs)
                 if i.explicit or not (i.abstract or (i.inactive and active_only is not False))]
        if active_only:
            items = [i for i in items if not i.inactive]
        if filter:
            items = _text_filter(items, filter)
        total = len(items)
        start = max(offset or 0, 0)
        page = items[start:start + count] if count is not None else items[start:]
        params: list[JsonDict] = []
        for name, value, key in (("filter", filter, "valueString"), ("count", count, "valueInteger"),
                                 ("offset", offset, "valueInteger"), ("activeOnly", active_only or None,
                                                                      "valueBoolean"),
                                 ("displayLanguage", display_language, "valueCode")):
            if value is not None:
                params.append({"name": name, key: value})
        expansion: JsonDict = {"identifier": f"urn:uuid:{uuid.uuid4()}",
                               "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "total": total}
        if offset is not None:
            expansion["offset"] = start
        if params:
            expansion["parameter"] = params
        expansion["contains"] = self._contains_json(page, display_language, include_designations)
        out = {k: v for k, v in vs.items() if k not in ("compose", "expansion", "text")}
        out["resourceType"] = "ValueSet"
        out["expansion"] = expansion
        return out

    def _contains_json(self, page: list[Item], display_language: str | None, include_designations: bool,
                       ) -> list[JsonDict]:
        desigs: dict[tuple[int, int], list[JsonDict]] = {}
        if display_language or include_designations:
            by_cs: dict[int, list[int]] = {}
            for i in page:
                if i.cs_id is not None and i.seq is not None:
                    by_cs.setdefault(i.cs_id, []).append(i.seq)
            for cs in self.index.list_code_systems():
                if cs.id in by_cs:
                    for seq, ds in self.index.designations(cs, by_cs[cs.id]).items():
                        desigs[(cs.id, seq)] = ds
        out: list[JsonDict] = []
        for i in page:
            e: JsonDict = {"system": i.system}
            if i.version:
                e["version"] = i.version
            if i.abstract:
                e["abstract"] = True
            if i.inactive:
                e["inactive"] = True
            e["code"] = i.code
            ds = desigs.get((i.cs_id, i.seq), []) if i.cs_id is not None and i.seq is not None else []
            display = _localised(i.display, ds, display_language)
            if display:
                e["display"] = display
            if include_designations and ds:
                e["designation"] = ds
            out.append(e)
        return out

    # -- ConceptMap --------------------------------------------------------------------------
    def translate(self, system: str, code: str, url: str | None = None, source: str | None = None,
                  target: str | None = None, target_system: str | None = None, reverse: bool = False,
                  ) -> JsonDict:
        """$translate: matches from the ConceptMap(s) that map this code (reverse: into it)."""
        return _translate(self.engine, system, code, url=url, source=source, target=target,
                          target_system=target_system, reverse=reverse)


def _localised(display: str | None, desigs: list[JsonDict], language: str | None) -> str | None:
    if not language:
        return display
    for lang in [x.split(";")[0].strip().lower() for x in language.split(",")]:
        for d in desigs:
            dl = str(d.get("language", "")).lower()
            if dl and (dl == lang or dl.split("-")[0] == lang.split("-")[0]):
                return str(d["value"])
    return display


def _text_filter(items: list[Item], text: str) -> list[Item]:
    """Every word of the filter must start a word of the display (or the code must start with it)."""
    words = [w for w in text.lower().split() if w]
    out = []
    for i in items:
        disp_words = (i.display or "").lower().replace("-", " ").replace("/", " ").split()
        if i.code.lower().startswith(text.lower()) or all(
                any(d.startswith(w) for d in disp_words) for w in words):
            out.append(i)
    return out
