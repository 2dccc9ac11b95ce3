"""Bulk Data $export through the real router and SQLite storage, on Synthea patients."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import pytest

from fhir_server.bulk import jobs
from fhir_server.bulk.runner import BulkRunner
from fhir_server.model import FhirRequest, RequestContext
from fhir_server.operations.export import register

SYNTHEA = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpora" / "synthea-r4"
BASE = "http://testserver/fhir"
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from fhir_server.router import FhirRouter, RouterSettings
    from fhir_server.search.registry import default_registry
    from fhir_server.storage import migrate
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.repository import SqlFhirRepository

    files = sorted(SYNTHEA.glob("*.json.gz"))[:3]
    if not files:
        pytest.skip(f"Synthea corpus not found at {SYNTHEA}")
    tmp = tmp_path_factory.mktemp("bulk")
    engine = make_engine(f"sqlite:///{tmp / 'fhir.db'}")
    migrate.upgrade(engine)
    repo = SqlFhirRepository(engine)
    router = FhirRouter(repo, default_registry(), RouterSettings(validate_writes=False))
    for f in files:
        bundle = json.load(gzip.open(f))
        resp = router.handle(FhirRequest("POST", "", resource=bundle))
        assert resp.status == 200, resp.resource
    patients = sorted(st.id for st in repo.iter_current(["Patient"]))
    assert len(patients) == len(files)
    svc = register(router, str(tmp / "data"), requires_token=True)
    yield router, svc, patients, tmp
    svc.runner.stop()


def call(router, method, path, query=(), ctx=None, headers=None, resource=None):
    return router.handle(FhirRequest(method, path, list(query), headers or {}, resource=resource,
                                     context=ctx or RequestContext(base_url=BASE)))


def kickoff(router, path="$export", query=(), ctx=None, method="GET", resource=None) -> str:
    r = call(router, method, path, query, ctx, ASYNC, resource)
    assert r.status == 202, r.resource
    loc = r.headers["Content-Location"]
    assert loc.startswith(BASE + "/$export-poll-status?_jobId=")
    return loc


def poll(router, loc, ctx=None, timeout=60.0):
    q = parse_qsl(urlparse(loc).query)
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = call(router, "GET", "$export-poll-status", q, ctx)
        if r.status != 202:
            return r
        assert r.headers["Retry-After"] and "X-Progress" in r.headers
        time.sleep(0.2)
    raise AssertionError("export did not finish")


def manifest_files(router, resp, ctx=None) -> dict[str, list[dict]]:
    assert resp.status == 200 and resp.raw_content_type == "application/json"
    man = json.loads(resp.raw)
    out = {}
    for o in man["output"]:
        f = call(router, "GET", "$export-file", parse_qsl(urlparse(o["url"]).query), ctx)
        assert f.status == 200 and f.raw_content_type == "application/fhir+ndjson"
        rows = [json.loads(line) for line in f.raw.decode().splitlines()]
        assert len(rows) == o["count"] and all(r["resourceType"] == o["type"] for r in rows)
        out[o["type"]] = rows
    return out


def test_system_export_matches_repository(env):
    router, _, _, _ = env
    resp = poll(router, kickoff(router, query=[("_outputFormat", "application/fhir+ndjson")]))
    man = json.loads(resp.raw)
    assert man["requiresAccessToken"] is True and man["error"] == []
    assert man["request"] == BASE + "/$export?_outputFormat=application%2Ffhir%2Bndjson"
    assert man["transactionTime"].endswith("Z")
    files = manifest_files(router, resp)
    assert {t: len(rows) for t, rows in files.items()} == router.repo.count_by_type()


def test_type_and_since(env):
    router, _, _, _ = env
    files = manifest_files(router, poll(router, kickoff(router, query=[("_type", "Patient,Condition")])))
    assert set(files) == {"Patient", "Condition"} and len(files["Patient"]) == 3
    future = poll(router, kickoff(router, query=[("_since", "2999-01-01T00:00:00Z")]))
    assert json.loads(future.raw)["output"] == []
    # a resource changed after the instant is exported, the ones before it are not (an Observation type, so
    # other tests' exports of Patient/Condition keep their counts)
    from datetime import UTC, datetime

    time.sleep(0.01)
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(0.01)
    changed = router.handle(FhirRequest("POST", "Observation", resource={
        "resourceType": "Observation", "status": "final", "code": {"text": "since-probe"}})).resource
    recent = manifest_files(router, poll(router, kickoff(router, query=[("_since", since)])))
    assert {t: [r["id"] for r in rows] for t, rows in recent.items()} == {"Observation": [changed["id"]]}
    router.handle(FhirRequest("DELETE", f"Observation/{changed['id']}"))


def test_type_filter_uses_search(env):
    router, _, _, _ = env
    vital = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
    files = manifest_files(router, poll(router, kickoff(router, query=[
        ("_type", "Observation"), ("_typeFilter", f"Observation?category={vital}")])))
    rows = files["Observation"]
    assert rows and all(any(c.get("code") == "vital-signs" for cat in r["category"] for c in cat["coding"])
                        for r in rows)
    total = call(router, "GET", "Observation", [("category", vital), ("_summary", "count")]).resource["total"]
    assert len(rows) == total < router.repo.count_by_type()["Observation"]


def test_patient_export_only_compartment_types(env):
    router, _, _, _ = env
    files = manifest_files(router, poll(router, kickoff(router, "Patient/$export")))
    assert "Patient" in files and "Organization" not in files and "Practitioner" not in files


def test_group_export_is_a_cohort(env):
    router, _, patients, _ = env
    group = call(router, "POST", "Group", resource={
        "resourceType": "Group", "type": "person", "actual": True,
        "member": [{"entity": {"reference": f"Patient/{patients[0]}"}}]}).resource
    files = manifest_files(router, poll(router, kickoff(router, f"Group/{group['id']}/$export", method="POST",
                                                        resource={"resourceType": "Parameters", "parameter": [
                                                            {"name": "_type", "valueString": "Patient,Encounter"}]})))
    assert [p["id"] for p in files["Patient"]] == [patients[0]]
    assert {e["subject"]["reference"] for e in files["Encounter"]} == {f"Patient/{patients[0]}"}


def _patient_params(*refs: str, **extra: str) -> dict:
    return {"resourceType": "Parameters", "parameter": [
        *({"name": "patient", "valueReference": {"reference": r}} for r in refs),
        *({"name": k, "valueString": v} for k, v in extra.items())]}


def test_patient_parameter_narrows_patient_and_group_exports(env):
    """Bulk Data v2 ``patient`` (POST, valueReference): only those patients' compartments."""
    router, _, patients, _ = env
    files = manifest_files(router, poll(router, kickoff(router, "Patient/$export", method="POST", resource=_patient_params(
        f"Patient/{patients[1]}", f"{BASE}/Patient/{patients[2]}", _type="Patient,Condition"))))
    assert sorted(p["id"] for p in files["Patient"]) == sorted(patients[1:3])
    assert {c["subject"]["reference"] for c in files["Condition"]} == {f"Patient/{p}" for p in patients[1:3]}
    group = call(router, "POST", "Group", resource={
        "resourceType": "Group", "type": "person", "actual": True,
        "member": [{"entity": {"reference": f"Patient/{p}"}} for p in patients[:2]]}).resource
    files = manifest_files(router, poll(router, kickoff(router, f"Group/{group['id']}/$export", method="POST",
                                                        resource=_patient_params(f"Patient/{patients[1]}",
                                                                                 _type="Patient"))))
    assert [p["id"] for p in files["Patient"]] == [patients[1]]
    for path, params in ((f"Group/{group['id']}/$export", _patient_params(f"Patient/{patients[2]}")),  # not a member
                         ("Patient/$export", _patient_params("Patient/not-on-this-server")),
                         ("Patient/$export", _patient_params("Observation/1")),
                         ("Patient/$export", _patient_params("http://elsewhere.example/fhir/Patient/1")),
                         ("$export", _patient_params(f"Patient/{patients[0]}"))):  # not at the system level
        r = call(router, "POST", path, headers=ASYNC, resource=params)
        assert r.status == 400 and r.resource["resourceType"] == "OperationOutcome", (path, r.resource)


def test_cancel_then_404(env):
    router, _, _, _ = env
    loc = kickoff(router)
    q = parse_qsl(urlparse(loc).query)
    assert call(router, "DELETE", "$export-poll-status", q).status == 202
    r = call(router, "GET", "$export-poll-status", q)
    assert r.status == 404 and r.resource["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("query,headers", [
    ([], {}),
    ([("_outputFormat", "text/csv")], ASYNC),
    ([("_since", "yesterday")], ASYNC),
    ([("_elements", "id")], ASYNC),
    ([("_type", "NotAType")], ASYNC),
    ([("_typeFilter", "Observation?nonsense=1")], ASYNC),
])
def test_bad_kickoffs_are_400(env, query, headers):
    router, _, _, _ = env
    assert call(router, "GET", "$export", query, headers=headers).status == 400


def test_scoped_exports(env):
    router, _, patients, _ = env
    pid = patients[1]
    ctx = RequestContext(base_url=BASE, scopes=frozenset({"patient/*.rs"}), patient=pid, client_id="app",
                         subject="pat")
    files = manifest_files(router, poll(router, kickoff(router, "Patient/$export", ctx=ctx), ctx), ctx)
    assert [p["id"] for p in files["Patient"]] == [pid]
    assert {c["subject"]["reference"] for c in files["Condition"]} == {f"Patient/{pid}"}
    # naming another patient: the same 400 as for one that does not exist (no probing with a patient token)
    r = call(router, "POST", "Patient/$export", ctx=ctx, headers=ASYNC, resource=_patient_params(f"Patient/{patients[0]}"))
    missing = call(router, "POST", "Patient/$export", ctx=ctx, headers=ASYNC, resource=_patient_params("Patient/nope"))
    assert r.status == missing.status == 400
    assert r.resource["issue"][0]["diagnostics"].replace(patients[0], "X") == \
        missing.resource["issue"][0]["diagnostics"].replace("nope", "X")
    narrow = RequestContext(base_url=BASE, scopes=frozenset({"system/Patient.rs"}), client_id="bulk", subject="bulk")
    assert call(router, "GET", "$export", [("_type", "Condition")], narrow, ASYNC).status == 403
    loc = kickoff(router, ctx=narrow)
    assert set(manifest_files(router, poll(router, loc, narrow), narrow)) == {"Patient"}
    other = RequestContext(base_url=BASE, scopes=frozenset({"system/*.rs"}), client_id="other", subject="other")
    assert call(router, "GET", "$export-poll-status", parse_qsl(urlparse(loc).query), other).status == 403


def test_job_resumes_after_restart(env, monkeypatch):
    router, svc, _, tmp = env
    svc.runner.stop()  # the "old process" dies: nothing picks the job up
    monkeypatch.setattr(svc.runner, "notify", lambda: None)
    try:
        loc = kickoff(router, query=[("_type", "Patient")])
        job_id = dict(parse_qsl(urlparse(loc).query))["_jobId"]
        assert call(router, "GET", "$export-poll-status", [("_jobId", job_id)]).status == 202
        # a running job whose worker stopped heart-beating is resumed too
        job, req = jobs.load(router.repo, job_id)
        req.heartbeat = time.time() - 3600
        jobs.save(router.repo, job_id, req, status="running")
        fresh = BulkRunner(router, str(tmp / "data"), poll_interval=0.1)
        fresh.resume_pending()  # what a restarted process does in register()
        try:
            files = manifest_files(router, poll(router, loc))
        finally:
            fresh.stop()
        assert len(files["Patient"]) == 3
    finally:
        svc.runner.start()


def test_idle_worker_exits_and_restarts_on_demand(env):
    router, _, _, tmp = env
    runner = BulkRunner(router, str(tmp / "idle"), poll_interval=0.05, idle_exit=0.2)
    runner.start()
    thread = runner._thread
    assert thread is not None
    thread.join(timeout=5)
    assert not thread.is_alive() and runner._thread is None
    runner.notify()
    assert runner._thread is not None and runner._thread.is_alive()
    runner.stop()
