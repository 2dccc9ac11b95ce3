"""Loading FHIR packages (and the bundled core R4 terminology) into the terminology tables."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from terminology import store
from terminology.packages import iter_resources, package_manifest
from terminology.schema import code_system, concept_map, package, value_set

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
Progress = Callable[[int, str], None]
TX_TYPES = {"CodeSystem", "ValueSet", "ConceptMap"}

CORE_DATA = Path(__file__).with_name("data") / "r4-core-terminology.ndjson.gz"
CORE_NAME = "hl7.fhir.r4.core.terminology"
CORE_VERSION = "4.0.1"


def load_resources(engine: Engine, resources: Iterable[JsonDict], progress: Progress | None = None,
                   origin: str | None = None, yield_to_stored: bool = False) -> dict[str, int]:
    """Store each CodeSystem/ValueSet/ConceptMap; one transaction, supplements after their bases.

    ``yield_to_stored``: keep what a client stored through the FHIR API under the same url and version
    (the bundled core terminology loads in the background and may finish after such a write).
    """
    counts = {"CodeSystem": 0, "ValueSet": 0, "ConceptMap": 0, "concepts": 0}
    deferred: list[JsonDict] = []
    with engine.begin() as conn:
        keep = _stored_through_api(conn) if yield_to_stored else set()
        n = 0
        for res in resources:
            rt = res.get("resourceType")
            if rt not in TX_TYPES or not res.get("url"):
                continue
            if (rt, res["url"], res.get("version") or "") in keep:
                continue
            if rt == "CodeSystem" and res.get("content") == "supplement":
                deferred.append(res)
                continue
            _load_one(conn, res, counts, origin)
            n += 1
            if progress is not None and n % 100 == 0:
                progress(n, res["url"])
        for res in deferred:
            _load_one(conn, res, counts, origin)
    return counts


def _load_one(conn: Any, res: JsonDict, counts: dict[str, int], origin: str | None) -> None:
    rt = res["resourceType"]
    if rt == "CodeSystem":
        store.load_code_system(conn, res, origin)
        counts["concepts"] += _count_concepts(res.get("concept", []))
    elif rt == "ValueSet":
        store.load_value_set(conn, res, origin)
    else:
        store.load_concept_map(conn, res, origin)
    counts[rt] += 1


_TABLES = {"CodeSystem": code_system, "ValueSet": value_set, "ConceptMap": concept_map}


def _stored_through_api(conn: Any) -> set[tuple[str, str, str]]:
    """(type, url, version) of every terminology resource synced from the FHIR store (it has an origin)."""
    return {(rt, url, version) for rt, t in _TABLES.items()
            for url, version in conn.execute(select(t.c.url, t.c.version).where(t.c.origin.is_not(None)))}


def _count_concepts(items: list[JsonDict]) -> int:
    return sum(1 + _count_concepts(c.get("concept", [])) for c in items)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def mark_package(engine: Engine, name: str, version: str, status: str, counts: dict[str, int] | None = None,
                 ) -> None:
    with engine.begin() as conn:
        conn.execute(delete(package).where(package.c.name == name, package.c.version == version))
        conn.execute(insert(package).values(name=name, version=version, status=status, loaded_at=_now(),
                                            counts=json.dumps(counts or {})))


def package_status(engine: Engine, name: str, version: str) -> str | None:
    with engine.connect().execution_options(readonly=True) as conn:
        return conn.execute(select(package.c.status).where(package.c.name == name,
                                                           package.c.version == version)).scalar()


def load_package(engine: Engine, spec: str | os.PathLike[str], progress: Progress | None = None,
                 ) -> dict[str, int]:
    """Load (or reload) a FHIR package given as ``.tgz``, folder, or ``name#version``."""
    meta = package_manifest(spec)
    name, version = str(meta.get("name", spec)), str(meta.get("version", ""))
    counts = load_resources(engine, iter_resources(spec, TX_TYPES), progress)
    mark_package(engine, name, version, "loaded", counts)
    return counts


def iter_core_resources(path: Path = CORE_DATA) -> Iterator[JsonDict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _claim(engine: Engine, name: str, version: str) -> bool:
    """Take the right to load a package once across processes (a row in tx_package)."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(package).values(name=name, version=version, status="loading",
                                                loaded_at=_now(), counts="{}"))
        return True
    except IntegrityError:
        with engine.begin() as conn:  # a failed earlier attempt may be retried
            res = conn.execute(update(package).where(package.c.name == name, package.c.version == version,
                                                     package.c.status == "failed")
                               .values(status="loading", loaded_at=_now()))
            return bool(res.rowcount)


def ensure_core(engine: Engine, on_done: Callable[[], None] | None = None, background: bool = True,
                ) -> threading.Thread | None:
    """Load the bundled core R4 terminology once per database (first start of a server)."""
    if not CORE_DATA.exists() or package_status(engine, CORE_NAME, CORE_VERSION) == "loaded":
        return None
    if not _claim(engine, CORE_NAME, CORE_VERSION):
        return None

    def run() -> None:
        try:
            counts = load_resources(engine, iter_core_resources(), yield_to_stored=True)
            mark_package(engine, CORE_NAME, CORE_VERSION, "loaded", counts)
            log.info("terminology: core R4 terminology loaded: %s", counts)
        except Exception:
            log.exception("terminology: loading the core R4 terminology failed")
            mark_package(engine, CORE_NAME, CORE_VERSION, "failed")
        if on_done is not None:
            on_done()

    if not background:
        run()
        return None
    t = threading.Thread(target=run, name="terminology-core-load", daemon=True)
    t.start()
    return t
