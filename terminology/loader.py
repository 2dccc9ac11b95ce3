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

from sqlalchemy import ColumnElement, Connection, Engine, delete, insert, select, update
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
CORE_PER_COMMIT = 200  # resources per transaction of the background core load (~2,500 in all)
# A "loading" claim not renewed for this long belongs to a process that died mid-load (each commit of the
# load renews it): another process takes it over, instead of the core terminology never loading.
CLAIM_STALE_S = 60.0


def load_resources(engine: Engine, resources: Iterable[JsonDict], progress: Progress | None = None,
                   origin: str | None = None, yield_to_stored: bool = False, per_commit: int | None = None,
                   on_commit: Callable[[Connection], None] | None = None) -> dict[str, int]:
    """Store each CodeSystem/ValueSet/ConceptMap, supplements after their bases; one transaction, or one per
    ``per_commit`` resources (``on_commit`` runs inside each).

    ``yield_to_stored``: keep what a client stored through the FHIR API under the same url and version
    (the bundled core terminology loads in the background and may finish after such a write).
    ``per_commit`` is for that background load: in one transaction it held SQLite's write lock for the whole
    load (1-4 s here), so every FHIR write, and the next package's table creation at start-up, waited for it.
    """
    counts = {"CodeSystem": 0, "ValueSet": 0, "ConceptMap": 0, "concepts": 0}
    deferred: list[JsonDict] = []

    def batches() -> Iterator[list[JsonDict]]:
        batch: list[JsonDict] = []
        for res in resources:
            if res.get("resourceType") not in TX_TYPES or not res.get("url"):
                continue
            if res["resourceType"] == "CodeSystem" and res.get("content") == "supplement":
                deferred.append(res)
                continue
            batch.append(res)
            if per_commit is not None and len(batch) >= per_commit:
                yield batch
                batch = []
        yield batch + deferred  # every resource has been read by now: the supplements go last

    n = 0
    for batch in batches():
        with engine.begin() as conn:
            keep = _stored_through_api(conn) if yield_to_stored else set()  # again per commit: writes go on
            for res in batch:
                if (res["resourceType"], res["url"], res.get("version") or "") in keep:
                    continue
                _load_one(conn, res, counts, origin)
                n += 1
                if progress is not None and n % 100 == 0:
                    progress(n, res["url"])
            if on_commit is not None:
                on_commit(conn)
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


def _now(delta: dt.timedelta | None = None) -> str:
    """UTC, always in the same ISO form: claims compare their times as text."""
    now = dt.datetime.now(dt.UTC)
    return (now + delta if delta is not None else now).isoformat(timespec="seconds")


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
    """Take the right to load a package once across processes (a row in tx_package): a new row, or one whose
    earlier attempt failed or whose loader died (its claim went stale)."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(package).values(name=name, version=version, status="loading",
                                                loaded_at=_now(), counts="{}"))
        return True
    except IntegrityError:
        with engine.begin() as conn:
            res = conn.execute(update(package).where(package.c.name == name, package.c.version == version,
                                                     (package.c.status == "failed") | _loader_died())
                               .values(status="loading", loaded_at=_now()))
            return bool(res.rowcount)


def claim_is_stale(engine: Engine, name: str, version: str) -> bool:
    """True when a load of the package was claimed and its loader stopped renewing the claim (it died)."""
    with engine.connect().execution_options(readonly=True) as conn:
        return conn.execute(select(package.c.name).where(
            package.c.name == name, package.c.version == version, _loader_died())).first() is not None


def _loader_died() -> ColumnElement[bool]:
    """A "loading" claim its loader has not renewed for CLAIM_STALE_S."""
    stale_before = _now(dt.timedelta(seconds=-CLAIM_STALE_S))
    return (package.c.status == "loading") & (package.c.loaded_at < stale_before)


def _renew_claim(name: str, version: str) -> Callable[[Connection], None]:
    def renew(conn: Connection) -> None:
        conn.execute(update(package).where(package.c.name == name, package.c.version == version,
                                           package.c.status == "loading").values(loaded_at=_now()))
    return renew


def ensure_core(engine: Engine, on_done: Callable[[], None] | None = None, background: bool = True,
                ) -> threading.Thread | None:
    """Load the bundled core R4 terminology once per database (first start of a server)."""
    if not CORE_DATA.exists() or package_status(engine, CORE_NAME, CORE_VERSION) == "loaded":
        return None
    if not _claim(engine, CORE_NAME, CORE_VERSION):
        return None

    def run() -> None:
        try:
            counts = load_resources(engine, iter_core_resources(), yield_to_stored=True,
                                    per_commit=CORE_PER_COMMIT, on_commit=_renew_claim(CORE_NAME, CORE_VERSION))
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
