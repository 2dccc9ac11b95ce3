"""A stand-in FHIR data source for CDS tests until the core server exists: an in-memory
store with the few search parameters our prefetch templates use, exposed in process
(LocalFhirClient-shaped) and over real HTTP (a werkzeug server thread)."""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from fhir_server.errors import OperationOutcomeError, not_found

SYNTHEA = Path(__file__).resolve().parents[3].parent / "shared" / "corpora" / "synthea-r4"


def _ref_ids(r: dict[str, Any]) -> set[str]:
    out = set()
    for k in ("subject", "patient"):
        ref = r.get(k)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            out.add(ref["reference"].split("/")[-1].removeprefix("urn:uuid:"))
    for p in r.get("participant") or []:
        ref = (p.get("actor") or {}).get("reference", "")
        out.add(ref.split("/")[-1])
    return out


def _tokens(r: dict[str, Any], name: str) -> set[str]:
    if name == "code":
        concepts = [r.get("code"), r.get("medicationCodeableConcept")]
        concepts += [c.get("code") for c in r.get("component") or []]
    elif name == "category":
        concepts = list(r.get("category") or [])
    else:
        return set()
    out = set()
    for c in concepts:
        for cd in (c or {}).get("coding") or []:
            out.add(str(cd.get("code")))
            out.add(f"{cd.get('system')}|{cd.get('code')}")
    return out


class MemoryFhir:
    def __init__(self) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.searches: list[str] = []

    def put(self, r: dict[str, Any]) -> dict[str, Any]:
        self.store[(r["resourceType"], r["id"])] = r
        return r

    def load_synthea(self, name_prefix: str) -> str:
        """Load one Synthea bundle (urn:uuid refs rewritten); returns the Patient id."""
        path = next(SYNTHEA.glob(f"{name_prefix}*.json.gz"))
        bundle = json.load(gzip.open(path))
        text = json.dumps(bundle)
        ids = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
        for full, rel in ids.items():
            text = text.replace(f'"{full}"', f'"{rel}"')
        pid = ""
        for e in json.loads(text)["entry"]:
            self.put(e["resource"])
            if e["resource"]["resourceType"] == "Patient":
                pid = e["resource"]["id"]
        return pid

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        r = self.store.get((rtype, rid))
        if r is None:
            raise not_found(f"{rtype}/{rid} not found")
        return r

    def search(self, rtype: str, params: list[tuple[str, str]] | dict[str, str]) -> list[dict[str, Any]]:
        items = list(params.items()) if isinstance(params, dict) else list(params)
        self.searches.append(rtype + "?" + "&".join(f"{k}={v}" for k, v in items))
        out = []
        for (t, _), r in self.store.items():
            if t != rtype:
                continue
            ok = True
            for k, v in items:
                values = set(v.split(","))
                if k == "patient":
                    ok = bool(_ref_ids(r) & {x.split("/")[-1] for x in values})
                elif k in ("code", "category"):
                    ok = bool(_tokens(r, k) & values)
                elif k == "status":
                    ok = r.get("status") in values
                elif k == "encounter":
                    ok = (r.get("encounter") or {}).get("reference", "").split("/")[-1] in values
                elif k.startswith("_"):
                    continue
                else:
                    raise OperationOutcomeError(400, f"unknown search parameter {k}")
                if not ok:
                    break
            if ok:
                out.append(r)
        return out


class MemoryClient:
    """LocalFhirClient-shaped access to MemoryFhir."""

    def __init__(self, mem: MemoryFhir) -> None:
        self.mem = mem

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        return self.mem.read(rtype, rid)

    def search(self, rtype: str, params: Any) -> list[dict[str, Any]]:
        return self.mem.search(rtype, params)


def fhir_http_app(mem: MemoryFhir, token: str | None) -> Flask:
    app = Flask("memfhir")

    @app.before_request
    def check() -> Any:
        if token and request.headers.get("Authorization") != f"Bearer {token}":
            return jsonify({"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                                                                           "code": "login"}]}), 401
        return None

    @app.get("/fhir/<rtype>/<rid>")
    def read(rtype: str, rid: str) -> Any:
        try:
            return jsonify(mem.read(rtype, rid))
        except OperationOutcomeError as e:
            return jsonify(e.outcome()), e.status

    @app.get("/fhir/<rtype>")
    def search(rtype: str) -> Any:
        try:
            found = mem.search(rtype, list(request.args.items(multi=True)))
        except OperationOutcomeError as e:
            return jsonify(e.outcome()), e.status
        return jsonify({"resourceType": "Bundle", "type": "searchset", "total": len(found),
                        "entry": [{"resource": r} for r in found]})

    return app


class ServerThread:
    """A real WSGI server on a free loopback port."""

    def __init__(self, app: Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
