from __future__ import annotations

import os
import threading
import uuid
from types import SimpleNamespace

import flask
import pytest
from sqlalchemy import create_engine, text

from fhir_server.events import EventBus, ResourceChanged
from fhir_server.model import FhirRequest
from terminology import loader
from terminology.service import TerminologyService
from terminology.web import init_app


class RecordingRouter:
    """Only records registrations; the real router's dispatch is tested by the core."""

    terminology = None

    def __init__(self) -> None:
        self.ops: list[tuple[str, str, tuple[str, ...]]] = []
        self.handlers: dict[tuple[str, str], object] = {}

    def register_operation(self, name, handler, level="type", resource_types=None):
        for rt in resource_types:
            self.ops.append((name, level, rt))
            self.handlers[(name, level, rt)] = handler


def test_init_app_wires_everything(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    router, events = RecordingRouter(), EventBus()
    services = SimpleNamespace(engine=engine, router=router, events=events,
                               settings=SimpleNamespace(extra={"terminology_autoload": "0"}))
    app = flask.Flask("t")
    init_app(app, services)
    svc = services.terminology
    assert isinstance(svc, TerminologyService) and router.terminology is svc
    for op, rt in (("lookup", "CodeSystem"), ("subsumes", "CodeSystem"), ("validate-code", "CodeSystem"),
                   ("validate-code", "ValueSet"), ("expand", "ValueSet"), ("translate", "ConceptMap")):
        assert (op, "type", rt) in router.ops and (op, "instance", rt) in router.ops
    # a CodeSystem written to the FHIR store becomes usable by $lookup through the registered handler
    cs = {"resourceType": "CodeSystem", "id": "c1", "url": "http://example.org/cs/c1", "status": "active",
          "content": "complete", "concept": [{"code": "a", "display": "Alpha"}]}
    events.publish(ResourceChanged("create", "CodeSystem", "c1", 1, cs))
    h = router.handlers[("lookup", "type", "CodeSystem")]
    resp = h(router, FhirRequest("GET", "CodeSystem/$lookup", query=[("system", cs["url"]), ("code", "a")]),
             "CodeSystem", None)
    assert {"name": "display", "valueString": "Alpha"} in resp.resource["parameter"]


def test_core_autoload_once(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    svc = TerminologyService(engine)
    t = svc.ensure_core(background=True)
    assert isinstance(t, threading.Thread)
    assert svc.ensure_core(background=True) is None  # claimed: a second process/thread does not reload
    t.join(60)
    assert loader.package_status(engine, loader.CORE_NAME, loader.CORE_VERSION) == "loaded"
    assert svc.in_value_set("http://hl7.org/fhir/ValueSet/administrative-gender",
                            "http://hl7.org/fhir/administrative-gender", "male") is True
    assert svc.ensure_core() is None


def test_core_autoload_keeps_a_code_system_stored_through_the_api(tmp_path):
    """The core package loads in the background; a same-url CodeSystem a client stored meanwhile wins."""
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    svc = TerminologyService(engine)
    fragment = {"resourceType": "CodeSystem", "id": "frag", "url": "http://snomed.info/sct", "status": "active",
                "content": "fragment", "concept": [{"code": "64572001", "display": "Disease (disorder)"}]}
    svc.load_resources([fragment], origin="CodeSystem/frag")  # what a FHIR write syncs (terminology.web)
    svc.ensure_core(background=False)  # the bundled core has SNOMED CT too, as content=not-present
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT cs.origin, cs.content, c.display FROM tx_code_system cs JOIN tx_concept c "
                                 "ON c.cs_id = cs.id WHERE cs.url = 'http://snomed.info/sct'")).all()
        other = conn.execute(text("SELECT count(*) FROM tx_code_system WHERE origin IS NULL")).scalar()
    assert rows == [("CodeSystem/frag", "fragment", "Disease (disorder)")]
    assert other > 100  # the rest of the core package did load


def test_bundled_core_is_generated_from_the_official_package():
    from terminology.build_core import core_lines
    from terminology.packages import shared_package

    pkg = shared_package("hl7.fhir.r4.examples")
    if pkg is None:
        pytest.skip("../shared/fhir-packages/hl7.fhir.r4.examples-*.tgz not available")
    shipped = [line for line in _gz_lines(loader.CORE_DATA)]
    assert shipped == list(core_lines(pkg)), "run: python -m terminology.build_core"


def _gz_lines(path):
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return list(fh)


@pytest.fixture()
def pg_engine():
    url = os.environ.get("TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        name = f"tx_{uuid.uuid4().hex[:10]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {e}")
    engine = create_engine(url.rsplit("/", 1)[0] + "/" + name)
    yield engine
    engine.dispose()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.mark.postgres
def test_postgresql_end_to_end(pg_engine):
    from pathlib import Path

    from terminology.importers.snomed import load_snomed

    svc = TerminologyService(pg_engine)
    svc.load_resources(loader.iter_core_resources())
    assert svc.subsumes("http://terminology.hl7.org/CodeSystem/v3-ActCode", "_ActEncounterCode", "AMB") == \
        "subsumes"
    out = svc.expand("http://terminology.hl7.org/ValueSet/v3-ActEncounterCode")
    assert "AMB" in {c["code"] for c in out["expansion"]["contains"]}
    load_snomed(pg_engine, Path(__file__).with_name("fixtures") / "snomed")  # SQL closure on PostgreSQL
    svc.invalidate()
    assert svc.codes_below("http://snomed.info/sct", "73211009") == {"73211009", "44054006", "46635009",
                                                                      "190330002"}
    r = svc.translate("http://hl7.org/fhir/address-use", "home")
    assert r["result"] and r["match"][0]["concept"]["code"] == "H"
