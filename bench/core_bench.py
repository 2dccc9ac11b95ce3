"""Core server benchmarks (issue 2).

1. Ingest: Synthea transaction bundles through the router (validation + indexing + history), resources/s,
   against a same-run baseline of raw inserts of the same JSON into the same kind of database.
2. Read by id: the real server (`digitalfront serve`, gunicorn) under load from separate client processes,
   req/s and p50/p99, against a same-run baseline: a constant body of the same size from a minimal route
   in the same server.

    .venv/bin/python bench/core_bench.py [--quick] [--postgres]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SYNTHEA = ROOT.parent / "shared" / "corpora" / "synthea-r4"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/"


def bundles(n: int | None) -> list[dict]:
    files = sorted(SYNTHEA.glob("*.json.gz"))
    if not files:
        files = sorted((ROOT / "digitalfront" / "demo_data").glob("*.json.gz"))
    return [json.loads(gzip.open(f).read()) for f in files[:n]]


def fresh_pg() -> tuple[str, str]:
    import psycopg

    name = f"df_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return PG + name, name


def drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ingest(url: str, data: list[dict]) -> float:
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from fhir_server.model import FhirRequest

    svc = build_services(Settings(database_url=url, auth=False))
    n = sum(len(b["entry"]) for b in data)
    t = time.perf_counter()
    for b in data:
        resp = svc.router.handle(FhirRequest("POST", "", resource=b))
        assert resp.status == 200, resp.resource
    dt = time.perf_counter() - t
    svc.engine.dispose()
    return n / dt


def raw_inserts(url: str, data: list[dict]) -> float:
    """Baseline: the same JSON into a plain table, one transaction per bundle, no validation or indexing."""
    import orjson
    from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert

    from fhir_server.storage.engine import make_engine

    engine = make_engine(url)
    md = MetaData()
    t_raw = Table("raw_resource", md, Column("pk", Integer, primary_key=True), Column("res_type", String(64)),
                  Column("fhir_id", String(64)), Column("body", Text))
    md.create_all(engine)
    n = sum(len(b["entry"]) for b in data)
    t = time.perf_counter()
    for b in data:
        rows = [{"res_type": e["resource"]["resourceType"], "fhir_id": str(uuid.uuid4()),
                 "body": orjson.dumps(e["resource"]).decode()} for e in b["entry"]]
        with engine.begin() as conn:
            conn.execute(insert(t_raw), rows)
    dt = time.perf_counter() - t
    engine.dispose()
    return n / dt


# ---------------------------------------------------------------- read by id under load
def _client(url_paths: list[str], port: int, seconds: float, q: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat: list[float] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        path = url_paths[i % len(url_paths)]
        i += 1
        t = time.perf_counter()
        conn.request("GET", path, headers={"Accept": "application/fhir+json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"{path}: {r.status}")
        lat.append(time.perf_counter() - t)
    q.put(lat)


def load(paths: list[str], port: int, seconds: float, clients: int) -> dict:
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_client, args=(paths, port, seconds, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    lat = [x for _ in procs for x in q.get()]
    for p in procs:
        p.join()
    lat.sort()
    return {"rps": len(lat) / seconds, "p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[int(len(lat) * 0.99)] * 1000}


def read_bench(url: str, data: list[dict], seconds: float, clients: int, rounds: int) -> dict:
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from fhir_server.model import FhirRequest

    svc = build_services(Settings(database_url=url, auth=False))
    for b in data:
        svc.router.handle(FhirRequest("POST", "", resource=b))
    ids = [(s.resource_type, s.id, len(json.dumps(s.resource))) for s in svc.repo.iter_current(["Observation", "Patient",
                                                                                              "Condition"])][:2000]
    svc.engine.dispose()
    body_size = int(statistics.median(n for _, _, n in ids))
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "DIGITALFRONT_DATABASE_URL": url, "DIGITALFRONT_AUTH": "off",
           "DIGITALFRONT_BENCH_CONSTANT_BYTES": str(body_size), "DIGITALFRONT_TERMINOLOGY_AUTOLOAD": "0"}
    server = subprocess.Popen([sys.executable, "-m", "digitalfront", "serve", "--port", str(port), "--workers", "2",
                               "--threads", "4"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/bench/constant")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        load(["/bench/constant"], port, 2, clients)  # warm-up both workers
        load([f"/fhir/{t}/{i}" for t, i, _ in ids], port, 2, clients)
        bases, reads = [], []
        for _ in range(rounds):  # alternate, so drifting machine load hits both alike
            bases.append(load(["/bench/constant"], port, seconds, clients))
            reads.append(load([f"/fhir/{t}/{i}" for t, i, _ in ids], port, seconds, clients))
        base = {k: statistics.median(b[k] for b in bases) for k in bases[0]}
        read = {k: statistics.median(r[k] for r in reads) for k in reads[0]}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return {"body_bytes": body_size, "baseline": base, "read": read, "ratio": read["rps"] / base["rps"], "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--postgres", action="store_true", help="also measure on PostgreSQL at 127.0.0.1:5432")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    data = bundles(8 if args.quick else 30)
    n = sum(len(b["entry"]) for b in data)
    out: dict = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
                 "resources": n}
    dbs = ["sqlite"] + (["postgresql"] if args.postgres else [])
    for db in dbs:
        ours, base = [], []
        for _ in range(1 if args.quick else args.runs):
            for fn, acc in ((ingest, ours), (raw_inserts, base)):
                if db == "sqlite":
                    with tempfile.TemporaryDirectory() as d:
                        acc.append(fn(f"sqlite:///{d}/b.db", data))
                else:
                    url, name = fresh_pg()
                    try:
                        acc.append(fn(url, data))
                    finally:
                        drop_pg(name)
        out[f"ingest_{db}"] = {"resources_per_s": statistics.median(ours), "raw_insert_per_s": statistics.median(base),
                               "ratio": statistics.median(ours) / statistics.median(base)}
        print(json.dumps({f"ingest_{db}": out[f"ingest_{db}"]}), flush=True)
    with tempfile.TemporaryDirectory() as d:
        out["read_sqlite"] = read_bench(f"sqlite:///{d}/r.db", data[:4], 4 if args.quick else 8, 2,
                                        1 if args.quick else args.runs)
    print(json.dumps(out, indent=2))
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / "core.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
