"""A real WSGI server running the SMART authorization server, plus a minimal FHIR read/search
endpoint wired through the same authenticator and ``fhir_server.authz`` hooks that the core
router uses, over official R4 example resources."""

from __future__ import annotations

import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, Response, request
from werkzeug.serving import make_server

from fhir_server import authz
from fhir_server.errors import OperationOutcomeError
from smart_apps.audit import Auditor
from smart_apps.server import SmartConfig
from smart_apps.store import SmartStore
from smart_apps.web import install

PKG = Path(__file__).resolve().parents[3] / ".." / "shared" / "fhir-packages" / "hl7.fhir.r4.examples-4.0.1.tgz"
EXAMPLES = ["Patient-example", "Patient-f001", "Observation-example", "Observation-f001", "Medication-med0301",
            "Condition-example", "Practitioner-f005"]


@dataclass
class SmartServer:
    url: str
    base: str
    store: SmartStore
    audit: list[dict[str, Any]] = field(default_factory=list)
    public_client: str = ""
    confidential: dict[str, Any] = field(default_factory=dict)
    ehr_app: str = ""


def _load_examples() -> dict[tuple[str, str], dict]:
    out = {}
    with tarfile.open(PKG) as tar:
        for name in EXAMPLES:
            res = json.load(tar.extractfile(f"package/{name}.json"))  # type: ignore[arg-type]
            out[(res["resourceType"], res["id"])] = res
    return out


def _mini_fhir(app: Flask, smart: Any, resources: dict[tuple[str, str], dict]) -> None:
    """Read and search on an in-memory set, enforcing exactly as the router's hooks do."""

    def fail(e: OperationOutcomeError) -> Response:
        resp = Response(json.dumps(e.outcome()), status=e.status, mimetype="application/fhir+json")
        resp.headers.update(e.headers)
        return resp

    js = Path(__file__).parent / "js"

    @app.get("/app/<name>")
    def static_app(name: str) -> Response:
        """The SMART JS test app, and SMART's fhirclient browser bundle from node_modules."""
        path = js / "node_modules" / "fhirclient" / "build" / name if name == "fhir-client.js" else js / "app" / name
        if name not in ("launch.html", "index.html", "fhir-client.js") or not path.exists():
            return Response("not found", status=404)
        return Response(path.read_bytes(), mimetype="text/html" if name.endswith(".html") else "text/javascript")

    @app.get("/fhir/metadata")
    def metadata() -> Response:
        from smart_apps.capability import security_component

        cs = {"resourceType": "CapabilityStatement", "status": "active", "date": "2026-01-01", "kind": "instance",
              "fhirVersion": "4.0.1", "format": ["json"],
              "rest": [{"mode": "server", "security": security_component(request.host_url + "fhir")}]}
        return Response(json.dumps(cs), mimetype="application/fhir+json")

    @app.get("/fhir/<rtype>/<rid>")
    def read(rtype: str, rid: str) -> Response:
        try:
            ctx = smart.authenticate(dict(request.headers))
            authz.check_interaction(ctx, "read", rtype)
            res = resources.get((rtype, rid))
            if res is None:
                return Response("{}", status=404)
            authz.check_resource(ctx, "read", res)
        except OperationOutcomeError as e:
            return fail(e)
        return Response(json.dumps(res), mimetype="application/fhir+json")

    @app.get("/fhir/<rtype>")
    def search(rtype: str) -> Response:
        try:
            ctx = smart.authenticate(dict(request.headers))
            authz.check_interaction(ctx, "search-type", rtype)
            params = list(request.args.items(multi=True)) + authz.search_restrictions(ctx, rtype)
            hits = [r for (t, _), r in resources.items() if t == rtype and all(_match(r, k, v) for k, v in params)]
            for r in hits:
                authz.check_resource(ctx, "search", r)
        except OperationOutcomeError as e:
            return fail(e)
        return Response(json.dumps({"resourceType": "Bundle", "type": "searchset", "total": len(hits),
                                    "entry": [{"resource": r} for r in hits]}), mimetype="application/fhir+json")


def _match(res: dict, key: str, value: str) -> bool:
    if key == "_id":
        return res.get("id") in value.split(",")
    if key in ("subject", "patient"):
        return res.get("subject", res.get("patient", {})).get("reference") == value
    if key == "category":
        return any(authz._matches_param(res, "category", value) for _ in [0])
    return True


def serve(app: Flask) -> tuple[str, Any]:
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_port}", srv


@pytest.fixture(scope="module")
def smart_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmartServer]:
    if not PKG.exists():
        pytest.skip(f"FHIR examples package not found at {PKG}")
    db = tmp_path_factory.mktemp("smart") / "smart.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    store = SmartStore(engine)
    events: list[dict[str, Any]] = []
    app = Flask("smart-test")
    resources = _load_examples()
    patients = [(rid, rid) for (t, rid) in resources if t == "Patient"]
    smart = install(app, store, SmartConfig(), Auditor(events.append), lambda q: patients)
    _mini_fhir(app, smart, resources)
    url, srv = serve(app)
    s = SmartServer(url=url, base=url + "/fhir", store=store, audit=events)
    store.add_user("pat", "pat-pass", "Patient/example", "Peter Chalmers")
    store.add_user("doc", "doc-pass", "Practitioner/f005", "A. Langeveld")
    s.public_client = store.add_client(
        "Public app", ["http://127.0.0.1/cb"], "openid fhirUser launch launch/patient launch/encounter offline_access "
        "online_access patient/*.rs patient/*.read user/*.rs", "none")["client_id"]
    s.confidential = store.add_client(
        "Confidential app", ["http://127.0.0.1/cb"], "openid fhirUser launch/patient offline_access patient/*.rs",
        "client_secret_basic")
    store.add_client("JS app", [url + "/app/index.html"], "openid fhirUser launch launch/patient patient/*.rs",
                     "none", launch_uri=url + "/app/launch.html", client_id="js-app")
    s.ehr_app = store.add_client("EHR app", ["http://127.0.0.1/cb"], "openid fhirUser launch patient/*.rs",
                                 "none", launch_uri="http://127.0.0.1/launch")["client_id"]
    yield s
    srv.shutdown()
