"""Search at scale (issue 3): clone the Synthea corpus into a database of N resources, then run a fixed mix.

For every query the same-run baseline is the identical result set fetched by primary key from the same
database (the floor any engine pays to return those rows). Reports load time and rate (first vs last
slice, to show whether ingest degrades as the database grows), index size per stored resource byte, and
p50/p95/req/s per query.

    .venv/bin/python bench/search_bench.py [--quick] [--resources 1000000] [--postgres] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from core_bench import drop_pg, fresh_pg  # noqa: E402

SYNTHEA = ROOT.parent / "shared" / "corpora" / "synthea-r4"


def load_corpus() -> list[dict]:
    files = sorted(SYNTHEA.glob("*.json.gz")) or sorted((ROOT / "digitalfront" / "demo_data").glob("*.json.gz"))
    return [json.loads(gzip.open(f).read()) for f in files]


UUID_RE = re.compile(r"urn:uuid:[0-9a-fA-F-]{36}")


def clone(bundle: dict, n: int) -> dict:
    """A copy with fresh placeholder ids and identifiers, so each clone is a new patient."""
    mapping = {e["fullUrl"]: f"urn:uuid:{uuid.uuid4()}" for e in bundle["entry"] if e.get("fullUrl")}
    text = UUID_RE.sub(lambda m: mapping.get(m.group(0), m.group(0)), json.dumps(bundle))
    b = json.loads(text)
    for e in b["entry"]:
        res = e["resource"]
        for ident in res.get("identifier", []) or []:
            if isinstance(ident, dict) and "value" in ident:
                ident["value"] = f"{ident['value']}-c{n}"
    return b


def ingest(svc: Any, corpus: list[dict], target: int) -> dict:
    from fhir_server.model import FhirRequest

    done, n, rates = 0, 0, []
    t0 = time.perf_counter()
    while done < target:
        window_busy, window_n = 0.0, 0
        for b in corpus:
            bundle = b if n == 0 else clone(b, n)  # cloning is not timed: only the server's work is
            t = time.perf_counter()
            resp = svc.router.handle(FhirRequest("POST", "", resource=bundle))
            window_busy += time.perf_counter() - t
            assert resp.status == 200, resp.resource
            done += len(bundle["entry"])
            window_n += len(bundle["entry"])
            if done >= target:
                break
        rates.append((done, window_n / window_busy))
        print(f"  loaded {done} resources ({rates[-1][1]:.0f}/s in the last pass)", flush=True)
        n += 1
    total = time.perf_counter() - t0
    return {"resources": done, "seconds": total, "rate_first_pass": rates[0][1], "rate_last_pass": rates[-1][1],
            "last_vs_first": rates[-1][1] / rates[0][1]}


def settle(svc: Any) -> float:
    """Let the load's write backlog drain before measuring; returns the seconds it took.

    A guard, so the mix and the A/B measure the database at its size and not a checkpoint still copying the
    load's WAL into the file (or the OS writing it back). After the 1M loads of 2026-11-29 it took 0 s: the
    slowdowns first blamed on the backlog were the FTS5 triggers and the loading connections (RESULTS.md).
    The load's own sustained rate (first pass vs last pass) is reported separately.
    """
    from fhir_server.storage import checkpoint

    t = time.perf_counter()
    if svc.engine.dialect.name == "sqlite":
        path = svc.engine.url.database
        while True:
            res = checkpoint.checkpoint_once(path)
            if res is None or (res[0] == 0 and res[1] == res[2]):
                break
            time.sleep(0.5)
        os.sync()
    else:
        with svc.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
            conn.commit()
    return time.perf_counter() - t


def sizes(svc: Any) -> dict:
    from sqlalchemy import text

    with svc.engine.connect() as conn:
        if svc.engine.dialect.name == "sqlite":
            try:
                rows = conn.execute(text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")).all()
            except Exception:  # noqa: BLE001 - dbstat not compiled in
                return {}
            by = {r[0]: r[1] for r in rows}
        else:
            rows = conn.execute(text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'")).all()
            by = {r[0]: r[1] for r in rows}
        body = conn.execute(text("SELECT SUM(LENGTH(CAST(body AS TEXT))) FROM fhir_resource")).scalar() or 1
    index = sum(v for k, v in by.items() if k.startswith("idx_") or k.startswith("ix_") or k.startswith("sqlite_autoindex"))
    return {"resource_body_bytes": body, "index_bytes": index, "index_bytes_per_body_byte": index / body,
            "all_tables_bytes": sum(by.values())}


def mix(svc: Any, rng: random.Random) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """The issue's fixed mix, parameterised from real stored data."""
    client = svc.client
    patients = client.search("Patient", [("_count", "50")], limit=50)
    p = rng.choice(patients)
    family = p["name"][0]["family"]
    ident = next(i for i in p["identifier"] if i.get("system") and i.get("value"))
    obs = client.search("Observation", [("subject", f"Patient/{p['id']}"), ("_count", "1")], limit=1)[0]
    code = obs["code"]["coding"][0]
    common = "http://loinc.org|8302-2"  # body height: in every Synthea record
    return [
        ("Patient?name", "Patient", [("name", family)]),
        ("Patient?identifier", "Patient", [("identifier", f"{ident['system']}|{ident['value']}")]),
        ("Observation?patient&code&date", "Observation", [("patient", p["id"]), ("code", f"{code['system']}|{code['code']}"),
                                                         ("date", "ge2000-01-01")]),
        ("Observation?subject&_sort=-date&_count=10", "Observation", [("subject", f"Patient/{p['id']}"),
                                                                     ("_sort", "-date"), ("_count", "10")]),
        ("Encounter?patient&_revinclude", "Encounter", [("patient", p["id"]), ("_revinclude", "Condition:encounter")]),
        ("Condition?code:below", "Condition", [("code:below", f"{SNOMED}|{DISORDER}")]),
        ("Observation?subject.name", "Observation", [("subject.name", family), ("_count", "20")]),
        ("Patient?_has:Observation:patient:code", "Patient", [("_has:Observation:patient:code",
                                                               f"{code['system']}|{code['code']}"), ("_count", "20")]),
        ("Patient/$everything", f"Patient/{p['id']}/$everything", [("_count", "100")]),
        ("Observation?code=common (page 1 + total)", "Observation", [("code", common), ("_total", "accurate")]),
    ]


SNOMED, DISORDER = "http://snomed.info/sct", "64572001"


def snomed_fragment(corpus: list[dict]) -> dict:
    """A CodeSystem fragment: every Synthea condition code as a child of 'Disease (disorder)', so that
    ``code:below=64572001`` exercises the terminology hierarchy the way a loaded SNOMED CT release would."""
    codes = {}
    for b in corpus:
        for e in b["entry"]:
            if e["resource"]["resourceType"] == "Condition":
                for c in e["resource"]["code"].get("coding", []):
                    if c.get("system") == SNOMED:
                        codes[c["code"]] = c.get("display", c["code"])
    return {"resourceType": "CodeSystem", "id": "snomed-fragment", "url": SNOMED, "status": "active",
            "content": "fragment", "hierarchyMeaning": "is-a",
            "concept": [{"code": DISORDER, "display": "Disease (disorder)",
                         "concept": [{"code": k, "display": v} for k, v in sorted(codes.items())]}]}


def by_pk(svc: Any, keys: list[tuple[str, str]]) -> float:
    from sqlalchemy import and_, or_, select

    from fhir_server.storage.tables import resource

    by_type: dict[str, list[str]] = {}
    for t_, i in keys:
        by_type.setdefault(t_, []).append(i)
    t = time.perf_counter()
    if keys:  # one indexed lookup per (type, id) via the unique key: the floor for returning these rows
        with svc.engine.connect() as conn:
            conn.execute(select(resource.c.body).where(or_(*[and_(resource.c.res_type == rt, resource.c.fhir_id.in_(ids))
                                                             for rt, ids in by_type.items()]))).all()
    return time.perf_counter() - t


def run_mix(svc: Any, repeats: int, seed: int) -> dict:
    from fhir_server.model import FhirRequest

    rng = random.Random(seed)
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeats):
        for name, path, query in mix(svc, rng):
            t = time.perf_counter()
            resp = svc.router.handle(FhirRequest("GET", path, query))
            dt = time.perf_counter() - t
            if resp.status != 200:
                raise SystemExit(f"{name}: {resp.status} {resp.resource}")
            keys = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in resp.resource.get("entry", [])
                    if "resource" in e]
            if not keys:  # every query is drawn from stored data: no rows means it measured nothing
                raise SystemExit(f"{name}: no results; the mix would time an empty answer")
            r = results.setdefault(name, {"ours": [], "pk": [], "n": []})
            r["ours"].append(dt)
            r["pk"].append(by_pk(svc, keys))
            r["n"].append(len(keys))
    out = {}
    for name, r in results.items():
        ours = sorted(r["ours"])
        pk = sorted(r["pk"])
        out[name] = {"p50_ms": statistics.median(ours) * 1000, "p95_ms": ours[int(len(ours) * 0.95) - 1] * 1000,
                     "max_ms": ours[-1] * 1000, "req_per_s": len(ours) / sum(ours),
                     "baseline_pk_p50_ms": statistics.median(pk) * 1000,
                     "ratio_p50": statistics.median(ours) / max(statistics.median(pk), 1e-6),
                     "results_median": statistics.median(r["n"])}
    return out


def ingest_vs_empty(svc: Any, corpus: list[dict], folder: str, rounds: int = 9) -> dict:
    """The same bundles into the big database and into an empty one: the degradation ratio.

    Both sides run in the same app build; the empty one is a fresh database per round (a new SQLite file,
    or a new PostgreSQL database). Each side first gets one untimed warm-up load (the big database's first
    write after start pays for reading its index pages from disk once: reported separately as
    ``big_db_cold_per_s``), then the rounds alternate which side goes first (ABBA), medians reported.
    """
    from digitalfront.app import create_app
    from digitalfront.config import Settings
    from fhir_server.model import FhirRequest

    sample = corpus[:4]
    n = sum(len(b["entry"]) for b in sample)
    pg = svc.engine.dialect.name == "postgresql"

    def load(target: Any, seed: int) -> float:
        bundles = [clone(b, seed + i) for i, b in enumerate(sample)]
        t = time.perf_counter()
        for b in bundles:
            resp = target.router.handle(FhirRequest("POST", "", resource=b))
            assert resp.status == 200, resp.resource
        return n / (time.perf_counter() - t)

    def fresh_db(r: int) -> tuple[Any, Any]:
        if not pg:
            app = create_app(Settings(database_url=f"sqlite:///{folder}/empty-{r}.db", auth=False))
            return app.extensions["digitalfront"], lambda: None
        url, name = fresh_pg()
        app = create_app(Settings(database_url=url, auth=False))
        return app.extensions["digitalfront"], lambda: drop_pg(name)

    cold = load(svc, 9_000)  # untimed in the ratio: first write after start
    big, empty = [], []
    for r in range(rounds):
        fresh, drop = fresh_db(r)
        try:
            load(fresh, 9_500 + r * 10)  # warm-up of the fresh app (statement caches, first connection)
            pair = [(svc, big, 0), (fresh, empty, 1)]
            for target, acc, k in (pair if r % 2 == 0 else pair[::-1]):
                acc.append(load(target, 10_000 + r * 100 + k * 10))
        finally:
            fresh.engine.dispose()
            drop()
    return {"big_db_cold_per_s": cold, "big_db_per_s": statistics.median(big),
            "empty_db_per_s": statistics.median(empty), "ratio": statistics.median(big) / statistics.median(empty),
            "rounds_big": [round(x) for x in big], "rounds_empty": [round(x) for x in empty]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--resources", type=int, default=1_000_000)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--keep", default=None, help="folder for the SQLite file (reused if present)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--pg-keep", default=None, help="PostgreSQL database name to load into and keep (reused)")
    ap.add_argument("--postgres-only", action="store_true", help="with --postgres: skip the SQLite run")
    args = ap.parse_args()
    target = 30_000 if args.quick else args.resources
    from digitalfront.app import create_app
    from digitalfront.config import Settings

    corpus = load_corpus()
    report: dict = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
                    "target_resources": target}
    folder = args.keep or tempfile.mkdtemp(prefix="df-search-bench-")
    urls = [] if args.postgres and args.postgres_only else [("sqlite", f"sqlite:///{folder}/search.db")]
    pg_name = None
    if args.postgres:
        import psycopg

        pg_name = args.pg_keep or f"df_search_bench_{uuid.uuid4().hex[:8]}"
        try:
            with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as c:
                if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg_name,)).fetchone():
                    c.execute(f'CREATE DATABASE "{pg_name}"')
            urls.append(("postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_name}"))
        except psycopg.OperationalError as exc:
            print(f"PostgreSQL skipped (unreachable at 127.0.0.1:5432): {exc}", file=sys.stderr)
            pg_name = None
    try:
        for db, url in urls:
            os.environ["DIGITALFRONT_TERMINOLOGY_AUTOLOAD"] = "0"
            svc = create_app(Settings(database_url=url, auth=False)).extensions["digitalfront"]
            svc.client.update(snomed_fragment(corpus))
            existing = sum(n for t, n in svc.repo.count_by_type().items() if t != "CodeSystem")
            print(f"== {db}: {existing} resources present, loading to {target}", flush=True)
            report[f"{db}_ingest"] = ingest(svc, corpus, target - existing) if existing < target else {
                "resources": existing, "reused": True}
            from fhir_server.storage.engine import optimize

            optimize(svc.engine)  # what `digitalfront load` and server start do
            report[f"{db}_settle_seconds"] = settle(svc)
            print(f"  write backlog drained in {report[f'{db}_settle_seconds']:.0f} s", flush=True)
            report[f"{db}_sizes"] = sizes(svc)
            run_mix(svc, 2, seed=1)  # warm caches
            report[f"{db}_mix"] = run_mix(svc, 5 if args.quick else args.repeats, seed=42)
            report[f"{db}_ingest_vs_empty"] = ingest_vs_empty(svc, corpus, folder)
            print(json.dumps({db: report[f"{db}_mix"]}, indent=1), flush=True)
            svc.engine.dispose()
    finally:
        if pg_name and not args.pg_keep:
            drop_pg(pg_name)
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / "search.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
