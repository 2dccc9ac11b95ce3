"""CDS Hooks latency: p50/p99 per service under concurrent load from a separate process.

Usage: .venv/bin/python bench/cds_bench.py [--quick] [--requests N] [--concurrency C] [--server S]

The full app (create_app, SQLite) is served either the production way
(``--server gunicorn``, default: 2 gthread workers x 8 threads, as
``digitalfront serve``) or by one threaded werkzeug process (``--server
werkzeug``); a separate load process sends signed (ES384) hook calls with C
concurrent connections. Every figure has a baseline measured in the same run:
the same HTTP round trip (JWT check, request validation) to a service that
returns {"cards": []}. Two modes: "repo" (no prefetch; the service reads our
FHIR repository because fhirServer is this server) and "prefetch" (the client
sends all prefetch). The patient is built so that every service produces cards.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import multiprocessing as mp
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SYNTHEA = ROOT.parent / "shared" / "corpora" / "synthea-r4"
ISS = "https://bench-ehr.example.org"
OUT = ROOT / "bench" / "out" / "cds.json"


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).isoformat(timespec="seconds")


def build_patient(client: Any) -> str:
    """A Synthea patient (active warfarin) plus a current septic inpatient stay and a recent note."""
    bundle = json.load(gzip.open(next(SYNTHEA.glob("Lea_Connelly*.json.gz"))))
    pid = ""
    for e in client.transaction(bundle)["entry"]:
        loc = e["response"]["location"]
        if "Patient/" in loc:
            pid = loc.split("Patient/")[1].split("/")[0]
    subj = {"reference": f"Patient/{pid}"}
    stay = client.create({"resourceType": "Encounter", "status": "in-progress", "class": {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}, "subject": subj,
        "period": {"start": _iso(timedelta(days=6))}})
    for days in (6.2, 50, 100):
        client.create({"resourceType": "Encounter", "status": "finished", "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}, "subject": subj,
            "period": {"start": _iso(timedelta(days=days)), "end": _iso(timedelta(days=days - 0.1))}})
    for code, value, unit in (("9279-1", 27, "/min"), ("8480-6", 88, "mm[Hg]"), ("8867-4", 121, "/min"),
                              ("59408-5", 91, "%"), ("8310-5", 38.7, "Cel"), ("9269-2", 14, "{score}")):
        client.create({"resourceType": "Observation", "status": "final", "subject": subj,
                       "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                       "effectiveDateTime": _iso(timedelta(minutes=20)),
                       "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                         "code": unit}})
    note = ("Assessment and plan: elderly woman with atrial fibrillation on warfarin, heart failure and new "
            "community acquired pneumonia. No evidence of stroke. Family history of breast cancer.")
    client.create({"resourceType": "DocumentReference", "status": "current", "subject": subj,
                   "date": _iso(timedelta(days=1)), "type": {"text": "Progress note"},
                   "content": [{"attachment": {"contentType": "text/plain",
                                               "data": base64.b64encode(note.encode()).decode()}}]})
    client.create({"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": subj,
                   "code": {"text": "Blood culture"}, "encounter": {"reference": f"Encounter/{stay['id']}"}})
    return pid


def scenarios(pid: str, eid: str, base: str) -> dict[str, dict[str, Any]]:
    ctx = {"userId": "Practitioner/bench", "patientId": pid}
    draft = {"resourceType": "MedicationRequest", "id": "bench-draft", "status": "draft", "intent": "order",
             "subject": {"reference": f"Patient/{pid}"}, "medicationCodeableConcept": {"coding": [
                 {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "310965",
                  "display": "Ibuprofen 200 MG Oral Tablet"}]}}
    orders = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"{base}/MedicationRequest/bench-draft", "resource": draft}]}

    def req(hook: str, **extra: Any) -> dict[str, Any]:
        return {"hookInstance": "7f1c0a52-3a0c-4a7e-9e47-0d8f0e6f2b1c", "hook": hook,
                "context": {**ctx, **extra}}

    return {
        "baseline-no-cards": req("patient-view"),
        "sepsis-early-warning": req("patient-view"),
        "medication-safety-sign": req("order-sign", draftOrders=orders),
        "discharge-readiness": req("encounter-discharge", encounterId=eid),
        "readmission-risk": req("patient-view"),
        "problem-list-gaps": req("patient-view"),
    }


def _load(url: str, key_json: dict[str, Any], calls: list[tuple[str, dict[str, Any]]], concurrency: int,
          queue: Any) -> None:
    """Runs in the load process: pre-sign one JWT per call, then fire them with ``concurrency`` threads."""
    import requests
    from joserfc.jwk import ECKey

    from cds_hooks.client_jwt import sign

    key = ECKey.import_key(key_json)
    work = [(f"{url}/cds-services/{sid}", body, sign(key, ISS, f"{url}/cds-services/{sid}"))
            for sid, body in calls]
    lat: list[float] = [0.0] * len(work)
    errors: list[str] = []
    nxt = iter(range(len(work)))
    lock = threading.Lock()

    def worker() -> None:
        s = requests.Session()
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            u, body, tok = work[i]
            t = time.perf_counter()
            r = s.post(u, json=body, headers={"Authorization": f"Bearer {tok}"}, timeout=30)
            lat[i] = time.perf_counter() - t
            if r.status_code != 200 or (not r.json()["cards"] and "baseline" not in u):
                errors.append(f"{u}: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    queue.put((lat, errors))


def measure(url: str, key: Any, sid: str, body: dict[str, Any], n: int, c: int) -> list[float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_load, args=(url, key.as_dict(private=True), [(sid, body)] * n, c, q))
    p.start()
    lat, errors = q.get(timeout=600)
    p.join()
    if errors:
        raise SystemExit(f"{len(errors)} failed calls, first: {errors[0]}")
    return lat


def start_gunicorn(settings: Any, key: Any, workers: int) -> tuple[Any, str]:
    """``digitalfront serve``'s gunicorn (gthread) on the same database, configured by environment."""
    import os
    import socket
    import subprocess

    import requests

    from cds_hooks.client_jwt import sign

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, DIGITALFRONT_DATABASE_URL=settings.database_url, DIGITALFRONT_AUTH="off",
               DIGITALFRONT_VALIDATE="off", DIGITALFRONT_TERMINOLOGY_AUTOLOAD="0",
               DIGITALFRONT_CDS_CLIENTS=settings.extra["cds_clients"],
               DIGITALFRONT_CDS_SERVICE_MODULES="cds_hooks.baseline", DIGITALFRONT_CDS_WARM="on",
               PYTHONPATH=str(ROOT))
    code = ("import logging; logging.disable(logging.WARNING); from digitalfront.wsgi import run_gunicorn; "
            f"run_gunicorn('127.0.0.1', {port}, {workers}, 8)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            u = f"{url}/cds-services"
            if requests.get(u, headers={"Authorization": f"Bearer {sign(key, ISS, u)}"}, timeout=2).ok:
                time.sleep(20)  # each worker builds the NLP pipeline and ONNX session in the background
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--server", choices=["gunicorn", "werkzeug"], default="gunicorn")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    n = args.requests or (40 if args.quick else 300)

    import logging

    import numpy as np
    from werkzeug.serving import WSGIRequestHandler, make_server

    from cds_hooks.client_jwt import generate_key, public_jwks
    from digitalfront.app import create_app
    from digitalfront.config import Settings

    logging.disable(logging.WARNING)
    WSGIRequestHandler.log_request = lambda *a, **k: None  # type: ignore[method-assign]
    key = generate_key("ES384", kid="bench")
    tmp = tempfile.mkdtemp(prefix="cds-bench-")
    settings = Settings(database_url=f"sqlite:///{tmp}/bench.db", auth=False, validate_writes=False,
                        extra={"cds_clients": json.dumps([{"iss": ISS, "jwks": public_jwks(key)}]),
                               "cds_service_modules": "cds_hooks.baseline", "terminology_autoload": "0"})
    app = create_app(settings)
    services = app.extensions["digitalfront"]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pid = build_patient(services.client)
    proc = None
    if args.server == "gunicorn":
        proc, url = start_gunicorn(settings, key, args.workers)
    eid = services.client.search("Encounter", [("patient", pid), ("status", "in-progress")])[0]["id"]
    base = url + "/fhir"
    import requests

    from cds_hooks.prefetch import LocalFhirSource, render

    rt = app.extensions["cds_hooks"]
    results: dict[str, Any] = {}
    for mode in ("prefetch", "repo"):
        for sid, body in scenarios(pid, eid, base).items():
            svc = rt.services[sid]
            if mode == "repo":
                body = body | {"fhirServer": base}
            else:
                src = LocalFhirSource(services.client)
                body = body | {"prefetch": {k: src.get(render(t, body["context"]) or "")
                                            for k, t in svc.prefetch.items()}}
            for _ in range(6):  # warm-up: connection pools, caches (models/NLP: DIGITALFRONT_CDS_WARM)
                requests.post(f"{url}/cds-services/{sid}", json=body, timeout=120,
                              headers={"Authorization": "Bearer " + __import__("cds_hooks.client_jwt").client_jwt
                                       .sign(key, ISS, f"{url}/cds-services/{sid}")})
            lat = np.array(measure(url, key, sid, body, n, args.concurrency)) * 1000
            results[f"{mode}/{sid}"] = {"p50_ms": float(np.percentile(lat, 50)),
                                        "p99_ms": float(np.percentile(lat, 99)), "n": n}
            print(f"{mode:8} {sid:24} p50 {results[f'{mode}/{sid}']['p50_ms']:7.1f} ms  "
                  f"p99 {results[f'{mode}/{sid}']['p99_ms']:7.1f} ms", flush=True)
    server.shutdown()
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=30)
    lines = ["| mode | service | p50 ms | p99 ms | p50 / baseline | p99 / baseline |", "|---|---|---|---|---|---|"]
    for k, v in results.items():
        mode, sid = k.split("/")
        b = results[f"{mode}/baseline-no-cards"]
        lines.append(f"| {mode} | {sid} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | "
                     f"{v['p50_ms'] / b['p50_ms']:.2f} | {v['p99_ms'] / b['p99_ms']:.2f} |")
    table = "\n".join(lines)
    print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": platform.platform(), "requests": n, "concurrency": args.concurrency,
                               "server": args.server, "workers": args.workers,
                               "results": results, "table": table}, indent=2))


if __name__ == "__main__":
    main()
