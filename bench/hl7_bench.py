"""HL7v2 MLLP ingest benchmark: messages/s and p99 ACK latency, end to end to the ACK after commit.

Baseline in the same run: the same asyncio listener answering AA without any processing.
The clients run in separate processes (multiprocessing), one per connection, each waiting for the ACK
of a message before sending the next (as MLLP senders do).  Rows: group commit (the listener's
default) and one message per transaction (``group_commit=False``), on SQLite and PostgreSQL.
Figures are medians over ``--runs`` runs.

    .venv/bin/python bench/hl7_bench.py [--quick] [--messages 600] [--connections 8] [--runs 3] [--postgres URL]
    .venv/bin/python bench/hl7_bench.py --profile     # in-process cProfile: where a message's time goes
    .venv/bin/python bench/hl7_bench.py --writer      # in-process: the writer thread's time, without/with workers
    .venv/bin/python bench/hl7_bench.py --cpu         # over MLLP: CPU per message by stage, and what 2 cores allow
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_server import compiled  # noqa: E402
from interfaces.ack import build_ack  # noqa: E402
from interfaces.client import MllpClient, ack_code  # noqa: E402
from interfaces.mllp import ListenerHandle, MllpServer, start_pipeline_listener  # noqa: E402
from interfaces.outcome import IngestResult  # noqa: E402
from interfaces.parsing import parse  # noqa: E402
from interfaces.prepare import usable_cores  # noqa: E402

T = TypeVar("T")


def make_messages(n: int, seed: int = 7) -> list[bytes]:
    """A realistic mix: half ADT (A01/A08), half ORU with 10-30 OBX each, 50 patients."""
    rnd = random.Random(seed)
    out = []
    run = uuid.uuid4().hex[:6]
    for i in range(n):
        mrn = 1000 + rnd.randrange(50)
        head = (f"MSH|^~\\&|BENCH|HOSP|DF|DF|20240101120000||{{t}}|{run}-{i}|P|2.5.1\r"
                f"PID|1||{mrn}^^^HOSP&1.2.3&ISO^MR||Doe{mrn}^Jane^Q||19800101|F|||1 Main St^^Town^MI^48000||"
                f"^PRN^PH^^1^555^5551234\r")
        if i % 2 == 0:
            ev = "A01" if rnd.random() < 0.5 else "A08"
            body = (f"EVN|{ev}|20240101120000\r"
                    f"PV1|1|I|W1^{mrn % 20}^1||||123^Who^Doc^^^^^^HOSP&1.2.3&ISO||||||||||||V{mrn}^^^HOSP&1.2.3&ISO^VN"
                    f"|||||||||||||||||||||||||20240101110000\r")
            out.append((head.format(t=f"ADT^{ev}^ADT_A01") + body).encode())
        else:
            obx = "".join(f"OBX|{k}|NM|{2000 + k}-1^Analyte {k}^LN||{rnd.uniform(1, 200):.1f}|mg/dL^mg/dL^UCUM|"
                          f"10-150|{'H' if k % 7 == 0 else 'N'}|||F|||20240101110000\r"
                          for k in range(1, rnd.randint(10, 30) + 1))
            body = f"OBR|1|P{run}{i}^LAB|F{run}{i}^LAB|24323-8^Panel^LN|||20240101110000||||||||||||||||F\r" + obx
            out.append((head.format(t="ORU^R01^ORU_R01") + body).encode())
    return out


def client_proc(port: int, messages: list[bytes], q: mp.Queue) -> None:
    lat = []
    codes: dict[str, int] = {}
    with MllpClient("127.0.0.1", port, timeout=120) as c:
        for m in messages:
            t0 = time.perf_counter()
            ack = c.send(m)[0]
            lat.append(time.perf_counter() - t0)
            code = ack_code(ack)
            codes[code] = codes.get(code, 0) + 1
    q.put((lat, codes))


def drive(port: int, messages: list[bytes], connections: int) -> dict[str, float | dict[str, int]]:
    q: mp.Queue = mp.Queue()
    chunks = [messages[i::connections] for i in range(connections)]
    procs = [mp.Process(target=client_proc, args=(port, ch, q)) for ch in chunks]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    lat = sorted(x for r in results for x in r[0])
    codes: dict[str, int] = {}
    for r in results:
        for k, v in r[1].items():
            codes[k] = codes.get(k, 0) + v
    return {"msgs_per_s": len(lat) / wall, "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, "codes": codes}


def baseline_handler(raw: bytes, source: str, on_commit: object = None) -> IngestResult:
    _, h = parse(raw)
    return IngestResult(0, "processed", "AA", [build_ack(h, "AA")])


def baseline_submit(items: list) -> list[Future[IngestResult]]:
    """The pipeline's submit interface, answered at once (the listener path of the real runs)."""
    out = []
    for raw, source, _ in items:
        fut: Future[IngestResult] = Future()
        fut.set_result(baseline_handler(raw, source))
        out.append(fut)
    return out


def run_baseline(messages: list[bytes], connections: int) -> dict:
    handle = ListenerHandle(MllpServer(baseline_handler, host="127.0.0.1", port=0, submit_handler=baseline_submit))
    try:
        return drive(handle.port, messages, connections)
    finally:
        handle.stop()


def _cpu_s(path: str) -> float:
    """utime + stime of a /proc process or task ``stat`` file, in seconds (0 once it is gone)."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float:
    """CPU seconds so far of every PostgreSQL server process on this machine (backends, WAL writer...)."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() != "postgres":
                        continue
            except OSError:
                continue
            total += _cpu_s(f"/proc/{pid}/stat")
    return total


def _stage_cpu(worker_pids: list[int], postgres: bool) -> dict[Any, float]:
    """CPU seconds so far of this process's threads (by (stage, thread id): a thread that exits during the run
    drops out, one that starts counts from zero), of the prepare workers and of PostgreSQL."""
    out: dict[Any, float] = {"PostgreSQL server": _postgres_cpu()} if postgres else {}
    for t in threading.enumerate():
        name = t.name
        stage = ("writer" if name == "hl7-writer" else "listener" if name.startswith("mllp-")
                 else "wal checkpoint" if "checkpoint" in name else "other server threads")
        out[(stage, t.native_id)] = _cpu_s(f"/proc/self/task/{t.native_id}/stat")
    out["prepare workers"] = sum(_cpu_s(f"/proc/{pid}/stat") for pid in worker_pids)
    return out


def full(db_url: str, messages: list[bytes], connections: int, group_commit: bool, workers: int | None,
         cpu: bool = False) -> dict:
    """The real listener and pipeline; ``workers``: prepare processes (None: the server default, cores minus one).

    ``cpu``: also account the CPU time each stage spent during the run (Linux /proc), per message."""
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from interfaces.service import pipeline_for

    services = build_services(Settings(database_url=db_url, auth=False, hl7_workers=workers))
    pipeline = pipeline_for(services)
    if pipeline.prepare_pool is not None:
        pipeline.prepare_pool.start()
    for m in make_messages(10, seed=1):
        pipeline.ingest(m, "warmup")
    handle = start_pipeline_listener(pipeline, "127.0.0.1", 0, group_commit=group_commit)
    before = (pipeline.stats.applied, pipeline.stats.group_commits)
    pids = pipeline.prepare_pool.pids() if pipeline.prepare_pool is not None else []
    pg = db_url.startswith("postgresql")
    if cpu:
        start, kids = _stage_cpu(pids, pg), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        result: dict[str, Any] = drive(handle.port, messages, connections)
        applied, commits = pipeline.stats.applied - before[0], pipeline.stats.group_commits - before[1]
        result["per_group"] = applied / commits if commits else 1.0  # messages applied per group commit
        if cpu:
            end, kids_end = _stage_cpu(pids, pg), resource.getrusage(resource.RUSAGE_CHILDREN)
            per: dict[str, float] = {}
            for k, v in end.items():
                stage = k[0] if isinstance(k, tuple) else k
                per[stage] = per.get(stage, 0.0) + (v - start.get(k, 0.0)) * 1000 / len(messages)
            # the client processes were waited for by drive(): the only children reaped during the run
            per["client processes"] = (kids_end.ru_utime + kids_end.ru_stime - kids.ru_utime - kids.ru_stime
                                       ) * 1000 / len(messages)
            result["cpu_ms"] = per
        return result
    finally:
        handle.stop()
        pipeline.close()  # its writer thread too: one left idle would linger into the next run
        services.engine.dispose()


def median_of(results: list[dict]) -> dict:
    codes: dict[str, int] = {}
    for r in results:
        for k, v in r["codes"].items():
            codes[k] = codes.get(k, 0) + v
    return {"msgs_per_s": statistics.median(r["msgs_per_s"] for r in results),
            "p50_ms": statistics.median(r["p50_ms"] for r in results),
            "p99_ms": statistics.median(r["p99_ms"] for r in results), "codes": codes,
            "per_group": statistics.median(r.get("per_group", 1.0) for r in results)}


def pg_database(admin_url: str):
    from sqlalchemy import create_engine, text

    name = f"hl7bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + "/" + name, drop


def on_database(pg_url: str | None, run: Callable[[str], T]) -> T | None:
    """``run(url)`` on a fresh database: a temporary SQLite file, or (``pg_url``) a new PostgreSQL database
    dropped afterwards; None, said on stderr, when PostgreSQL cannot be reached."""
    if pg_url is None:
        with tempfile.TemporaryDirectory() as tmp:
            return run(f"sqlite:///{tmp}/bench.db")
    try:
        url, drop = pg_database(pg_url)
    except Exception as exc:  # noqa: BLE001
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
        return None
    try:
        return run(url)
    finally:
        drop()


PROFILE_PARTS = [
    ("parse (ER7 tokenizer)", "interfaces/parsing.py", "parse"),
    ("map to Bundle", "interfaces/mapping/__init__.py", "map_to_bundle"),
    ("store: receive (dedup select + insert)", "interfaces/pipeline.py", "_receive"),
    ("store: finish (update) + ACK", "interfaces/pipeline.py", "_finish"),
    ("core: conditional lookups", "fhir_server/interactions/common.py", "match_conditional"),
    ("core: current-row read per PUT", "fhir_server/storage/repository.py", "_current_row"),
    ("core: validation", "fhir_server/router.py", "validate_write"),
    ("core: index extraction", "fhir_server/search/extract.py", "extract"),
    ("core: flush buffered rows (executemany)", "fhir_server/storage/repository.py", "_flush"),
    ("core: reference rewrite", "fhir_server/interactions/prepared.py", "replace_references"),
]


def profile(db_url: str, label: str, n: int = 320, group: int = 16) -> None:
    """Group-commit ingest in-process (no sockets): unprofiled ms/message, then a cProfile breakdown."""
    import cProfile
    import pstats

    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from interfaces.service import pipeline_for

    services = build_services(Settings(database_url=db_url, auth=False, hl7_workers=0))  # all in the writer
    pipeline = pipeline_for(services)
    for m in make_messages(20, seed=1):
        pipeline.ingest(m, "warmup")
    msgs = make_messages(2 * n, seed=3)
    t0 = time.perf_counter()
    for i in range(0, n, group):
        pipeline.ingest_batch([(m, "bench", None) for m in msgs[i:i + group]])
    plain = (time.perf_counter() - t0) / n * 1000
    # the work happens in the pipeline's writer thread: profile that thread (a new one, started by submit)
    pipeline.close()
    prof = cProfile.Profile()
    loop = pipeline._write_loop

    def profiled_loop() -> None:
        prof.enable()
        try:
            loop()
        finally:
            prof.disable()

    pipeline._write_loop = profiled_loop  # type: ignore[method-assign]
    pipeline._closing = False
    for i in range(n, 2 * n, group):
        pipeline.ingest_batch([(m, "bench", None) for m in msgs[i:i + group]])
    pipeline.close()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]

    def cum(path: str, func: str) -> float:
        return sum(v[3] for k, v in stats.items() if k[0].endswith(path) and k[2] == func)

    total = cum("interfaces/pipeline.py", "_write_loop")
    commit = sum(v[3] for k, v in stats.items() if k[0] == "~" and "commit" in k[2])
    print(f"{label}: {plain:.1f} ms/message without profiler (groups of {group}); profiled shares:")
    if compiled.active():
        print("  (the compiled hot modules are invisible to cProfile and count as 0%: for their shares run with "
              "DIGITALFRONT_PURE_PYTHON=1)")
    for name, path, func in PROFILE_PARTS:
        print(f"  {name:44} {100 * cum(path, func) / total:5.1f}%")
    print(f"  {'database commits':44} {100 * commit / total:5.1f}%")
    services.engine.dispose()


def writer_time(workers: int | None, n: int = 640) -> None:
    """In-process: submit ``n`` messages at once and time the writer thread (wall and its own CPU)."""
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from interfaces.service import pipeline_for

    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(database_url=f"sqlite:///{tmp}/w.db", auth=False, hl7_workers=workers))
        pipeline = pipeline_for(services)
        if pipeline.prepare_pool is not None:
            pipeline.prepare_pool.start()
        for m in make_messages(20, seed=1):
            pipeline.ingest(m, "warmup")
        spent = {"wall": 0.0, "cpu": 0.0, "n": 0}
        apply = pipeline._apply

        def timed(group: list, arrivals: list | None = None) -> None:
            t, c = time.perf_counter(), time.thread_time()
            apply(group, arrivals)
            spent["wall"] += time.perf_counter() - t
            spent["cpu"] += time.thread_time() - c
            spent["n"] += len(group)

        pipeline._apply = timed  # type: ignore[method-assign,assignment]
        t0 = time.perf_counter()
        for f in pipeline.submit([(m, "bench", None) for m in make_messages(n, seed=3)]):
            f.result()
        wall = (time.perf_counter() - t0) / n * 1000
        n_workers = pipeline.prepare_pool.workers if pipeline.prepare_pool is not None else 0
        print(f"workers={n_workers}: {wall:.1f} ms per message; writer applying {spent['wall'] / spent['n'] * 1000:.1f} "
              f"ms (its CPU {spent['cpu'] / spent['n'] * 1000:.1f} ms); prepared by workers "
              f"{pipeline.stats.prepared}/{pipeline.stats.applied}")
        pipeline.close()
        services.engine.dispose()


def print_cpu(label: str, rows: list[dict]) -> None:
    """The median CPU per message by stage of ``rows`` (runs with ``cpu_ms``), and the cores' ceiling."""
    cores = usable_cores()
    stages = sorted({k for r in rows for k in r["cpu_ms"]}, key=lambda k: -rows[0]["cpu_ms"].get(k, 0.0))
    med = {k: statistics.median(r["cpu_ms"].get(k, 0.0) for r in rows) for k in stages}
    total = sum(med.values())
    rate = statistics.median(r["msgs_per_s"] for r in rows)
    print(f"{label}: {rate:.1f} msg/s (median of {len(rows)}); CPU ms per message by stage: "
          + ", ".join(f"{k} {med[k]:.2f}" for k in stages))
    print(f"  total {total:.2f} ms -> at most {cores * 1000 / total:.0f} msg/s on {cores} cores with perfect overlap "
          f"({rate * total / (cores * 10):.0f}% of the cores used); the writer thread alone allows "
          f"{1000 / med.get('writer', 1e-9):.0f} msg/s")


def cpu_report(messages: int, connections: int, runs: int, pg_url: str | None) -> None:
    """CPU milliseconds per message by stage over MLLP (group commit, default workers), and the throughput
    the machine's cores could give at best if every stage overlapped perfectly."""
    targets: list[tuple[str, str | None]] = [("SQLite", None)] + ([("PostgreSQL", pg_url)] if pg_url else [])
    for label, url in targets:
        rows = []
        for run in range(runs):
            msgs = make_messages(messages, seed=40 + run)
            row = on_database(url, partial(full, messages=msgs, connections=connections, group_commit=True,
                                           workers=None, cpu=True))
            if row is None:
                break
            rows.append(row)
        if rows:
            print_cpu(f"{label}, group commit + workers", rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--skip-single", action="store_true", help="skip the one-message-per-transaction rows")
    ap.add_argument("--profile", action="store_true", help="in-process cProfile breakdown instead of MLLP runs")
    ap.add_argument("--writer", action="store_true", help="in-process writer-thread time, without and with workers")
    ap.add_argument("--cpu", action="store_true", help="CPU per message by stage over MLLP, and the cores' ceiling")
    args = ap.parse_args()
    if args.cpu:
        cpu_report(100 if args.quick else args.messages, args.connections, 1 if args.quick else args.runs,
                   args.postgres)
        return 0
    if args.writer:
        for n_workers in (0, None, 0, None):  # None: the server default (cores minus one)
            writer_time(n_workers)
        return 0
    if args.profile:
        on_database(None, lambda db: profile(db, "SQLite"))
        on_database(args.postgres, lambda db: profile(db, "PostgreSQL"))
        return 0
    n = 100 if args.quick else args.messages
    runs = 1 if args.quick else args.runs
    rows: list[tuple[str, list[dict]]] = [("baseline: AA without processing", []),
                                          ("SQLite (WAL), group commit + workers", []),
                                          ("SQLite, group commit, no workers", []),
                                          ("SQLite, 1 msg/transaction", []),
                                          ("PostgreSQL, group commit + workers", []),
                                          ("PostgreSQL, group commit, no workers", []),
                                          ("PostgreSQL, 1 msg/transaction", [])]
    variants: tuple[tuple[bool, int | None], ...] = ((True, None), (True, 0), (False, 0))  # (group commit, workers): the default first
    pg_ok = True
    for run in range(runs):
        msgs = make_messages(n, seed=7 + run)  # fresh control ids per run and database
        rows[0][1].append(run_baseline(msgs, args.connections))
        for k, (group, workers) in enumerate(variants):
            if not group and args.skip_single:
                continue
            row = on_database(None, partial(full, messages=msgs, connections=args.connections, group_commit=group,
                                            workers=workers, cpu=k == 0))
            assert row is not None
            rows[1 + k][1].append(row)
        if not pg_ok:
            continue
        for k, (group, workers) in enumerate(variants):
            if not group and args.skip_single:
                continue
            row = on_database(args.postgres, partial(full, messages=msgs, connections=args.connections,
                                                     group_commit=group, workers=workers, cpu=k == 0))
            if row is None:
                pg_ok = False
                break
            rows[4 + k][1].append(row)
    base = median_of(rows[0][1])
    print(f"{n} messages (ADT + ORU with 10-30 OBX), {args.connections} client connections in separate "
          f"processes, median of {runs} run(s); compiled hot modules: {compiled.describe()}")
    print(f"{'run':38} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs baseline':>12} {'msgs/commit':>12}  acks")
    for name, results in rows:
        if not results:
            continue
        r = median_of(results)
        print(f"{name:38} {r['msgs_per_s']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
              f"{r['msgs_per_s'] / base['msgs_per_s']:11.3f}x {r['per_group']:12.1f}  {r['codes']}")
    for name, results in rows:
        if results and "cpu_ms" in results[0]:
            print_cpu(name, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
