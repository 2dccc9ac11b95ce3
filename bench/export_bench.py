"""Bulk $export throughput on the Synthea corpus, against a plain streaming read of the same rows.

    .venv/bin/python bench/export_bench.py [--quick] [--repeat N] [--db URL]

Baseline: ``repo.iter_current()`` over every row, serialising each resource to JSON (what any export
must at least do). Export: a system-level job run synchronously by ``BulkRunner`` (type-by-type
iteration, scope check, NDJSON file writes, job heartbeats). Both read the same database in the same run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SYNTHEA = ROOT / ".." / "shared" / "corpora" / "synthea-r4"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5 patient bundles instead of all")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", default=None, help="database URL (default: a temp SQLite file)")
    args = ap.parse_args()

    from fhir_server.bulk import jobs
    from fhir_server.bulk.runner import BulkRunner
    from fhir_server.model import FhirRequest
    from fhir_server.router import FhirRouter, RouterSettings
    from fhir_server.search.registry import default_registry
    from fhir_server.storage import migrate
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.repository import SqlFhirRepository

    tmp = Path(tempfile.mkdtemp(prefix="export-bench-"))
    engine = make_engine(args.db or f"sqlite:///{tmp / 'bench.db'}")
    migrate.upgrade(engine)
    repo = SqlFhirRepository(engine)
    router = FhirRouter(repo, default_registry(), RouterSettings(validate_writes=False))
    files = sorted(SYNTHEA.glob("*.json.gz"))
    if args.quick:
        files = files[:5]
    t0 = time.perf_counter()
    for f in files:
        resp = router.handle(FhirRequest("POST", "", resource=json.load(gzip.open(f))))
        assert resp.status == 200, resp.resource
    total = sum(repo.count_by_type().values())
    print(f"loaded {len(files)} bundles, {total} resources in {time.perf_counter() - t0:.1f}s")

    runner = BulkRunner(router, tmp / "data")
    base_rates, export_rates = [], []
    for i in range(args.repeat):
        t = time.perf_counter()
        n = 0
        for st in repo.iter_current():
            orjson.dumps(st.resource)
            n += 1
        base_rates.append(n / (time.perf_counter() - t))
        job_id = str(uuid.uuid4())
        now = datetime.now(UTC).isoformat()
        jobs.create(repo, job_id, jobs.ExportRequest(level="system", request_url="bench", base_url="bench",
                                                     transaction_time=now))
        t = time.perf_counter()
        runner.run(job_id)
        elapsed = time.perf_counter() - t
        _, req = jobs.load(repo, job_id) or (None, None)
        exported = sum(o["count"] for o in req.output) if req else 0
        assert exported == n == total, (exported, n, total)
        export_rates.append(exported / elapsed)
        print(f"run {i + 1}: baseline {base_rates[-1]:.0f}/s, export {export_rates[-1]:.0f}/s")
    b, e = statistics.median(base_rates), statistics.median(export_rates)
    print(f"median over {args.repeat} runs, {total} resources: baseline streaming read {b:.0f} resources/s; "
          f"$export {e:.0f} resources/s; ratio {e / b:.2f}x")


if __name__ == "__main__":
    main()
