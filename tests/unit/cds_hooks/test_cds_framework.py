"""Discovery, invocation, request validation (corpus cases), CORS, feedback, prefetch."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from cds_hooks.cards import CdsResponse, check_discovery, check_response
from cds_hooks.errors import CdsError
from cds_hooks.prefetch import PrefetchData, render
from cds_hooks.registry import CdsService, ServiceEnv, discover
from cds_hooks.validation import validate_request
from tests.unit.cds_hooks.cds_memfhir import fhir_http_app
from tests.unit.cds_hooks.cds_testutil import CORPUS, corpus, hook_request


class Echo(CdsService):
    """Records what it was given; answers no cards."""

    title = "echo"
    description = "test service"
    seen: ClassVar[list[PrefetchData]] = []

    def __init__(self, sid: str, hook: str, prefetch: dict[str, str] | None = None,
                 required: frozenset[str] = frozenset()) -> None:
        self.id, self.hook = sid, hook  # type: ignore[misc]
        self.prefetch = prefetch or {}  # type: ignore[misc]
        self.required_prefetch = required  # type: ignore[misc]

    def invoke(self, request: dict[str, Any], data: PrefetchData, env: ServiceEnv) -> CdsResponse:
        Echo.seen.append(data)
        return CdsResponse()


ECHOES = [Echo("pv", "patient-view"), Echo("os", "order-select"), Echo("sign", "order-sign")]


def test_discovery_lists_every_builtin_service_and_is_valid(cds: Any) -> None:
    r = cds.get("/cds-services")
    assert r.status_code == 200
    body = r.get_json()
    assert check_discovery(body) == []
    ids = {s["id"]: s["hook"] for s in body["services"]}
    assert ids == {"sepsis-early-warning": "patient-view", "medication-safety-select": "order-select",
                   "medication-safety-sign": "order-sign", "readmission-risk": "patient-view",
                   "problem-list-gaps": "patient-view", "discharge-readiness": "encounter-discharge"}
    assert all("{{context.patientId}}" in s["prefetch"]["patient"] for s in body["services"])


def test_discovery_requires_a_jwt_and_cors_is_open(cds: Any) -> None:
    r = cds.http.get("/cds-services")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    pre = cds.http.open("/cds-services/sepsis-early-warning", method="OPTIONS",
                        headers={"Origin": "https://sandbox.cds-hooks.org",
                                 "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code in (200, 204)
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]


def test_enabled_list_and_extra_modules_select_services() -> None:
    assert [s.id for s in discover(["discharge-readiness"])] == ["discharge-readiness"]
    with pytest.raises(ValueError):
        discover(None, ["cds_hooks.cards"])  # no SERVICE there


@pytest.mark.parametrize("name,service", [
    ("cdshooks-request-patient-view-good.json", "pv"),
    ("cdshooks-request-order-select-good.json", "os"),
    ("cdshooks-request-order-sign-good.json", "sign"),
])
def test_corpus_good_requests_are_accepted(make_cds: Any, name: str, service: str) -> None:
    cds = make_cds(services=ECHOES)
    r = cds.post(f"/cds-services/{service}", corpus(name))
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"cards": []}


@pytest.mark.parametrize("name,service,expect", [
    ("cdshooks-request-patient-view-bad.json", "pv", ["context.patientId", "context.encounterId",
                                                       "prefetch.item1", "prefetch.item2"]),
    ("cdshooks-request-order-select-bad.json", "os", ["context.patientId", "context.selections[0]",
                                                       "missing fullUrl", "prefetch.item1"]),
    ("cdshooks-request-order-sign-bad-1.json", "sign", ["context.patientId", "Xactive", "birthDate",
                                                         "missing fullUrl"]),
    ("cdshooks-request-order-sign-bad-2.json", "sign", ["context.patientId", "prefetch.item1"]),
    ("cdshooks-request-order-select-extensions.json", "os", ["context.draftOrders is required"]),
])
def test_corpus_bad_requests_are_400_naming_each_problem(make_cds: Any, name: str, service: str,
                                                         expect: list[str]) -> None:
    cds = make_cds(services=ECHOES)
    r = cds.post(f"/cds-services/{service}", corpus(name))
    assert r.status_code == 400
    body = r.get_json()
    assert body["resourceType"] == "OperationOutcome"
    text = " ".join(i.get("diagnostics", "") for i in body["issue"])
    for e in expect:
        assert e in text, (e, text)


def test_wrong_hook_unknown_service_and_non_json(make_cds: Any) -> None:
    cds = make_cds(services=ECHOES)
    assert cds.post("/cds-services/pv", corpus("cdshooks-request-order-sign-good.json")).status_code == 400
    assert cds.post("/cds-services/nope", corpus("cdshooks-request-order-sign-good.json")).status_code == 404
    r = cds.http.post("/cds-services/pv", data=b"{not json", content_type="application/json",
                      headers={"Authorization": f"Bearer {cds.token('/cds-services/pv')}"})
    assert r.status_code == 400
    # a prefetch resource whose resourceType fhir.resources cannot even look up (was a ValueError: a 500)
    req = corpus("cdshooks-request-order-sign-good.json") | {"hook": "patient-view"}
    req["prefetch"] = {"patient": {"resourceType": "a\x00b"}}
    assert cds.post("/cds-services/pv", req).status_code == 400


@pytest.mark.parametrize("name,valid", [
    ("cdshooks-response-empty.json", True), ("cdshooks-response-link.json", True),
    ("cdshooks-response-no-link.json", True), ("cdshooks-response-source-link.json", True),
    ("cdshooks-response-two-cards.json", True), ("cdshooks-response-empty-source.json", False),
    ("cdshooks-response-empty2.json", False), ("cdshooks-response-suggestion.json", False),
])
def test_card_checker_agrees_with_the_reference_validator(name: str, valid: bool) -> None:
    problems = check_response(corpus(name), strict=False)
    assert (problems == []) is valid, problems
    expected = corpus(f"expected-R4.{name.removesuffix('.json')}-logical.json")
    assert any(i["severity"] == "error" for i in expected.get("issue", [])) is (not valid)


def test_card_checker_rules() -> None:
    card = {"summary": "x" * 140, "indicator": "danger", "source": {"label": "s"}, "detail": "",
            "links": [{"label": "l", "url": "u", "type": "absolute", "appContext": "a"}],
            "suggestions": [{"label": "s", "actions": [{"type": "delete"}]}]}
    text = " ".join(check_response({"cards": [card]}))
    assert "shorter than 140" not in " ".join(check_response({"cards": [card]}, strict=False))
    for e in ("shorter than 140", "indicator", "detail is empty", "appContext", "selectionBehavior",
              "description is required", "resourceId"):
        assert e in text


def test_prefetch_tokens() -> None:
    ctx = {"patientId": "p1", "userId": "PractitionerRole/r9",
           "draftOrders": {"resourceType": "Bundle", "entry": [
               {"resource": {"resourceType": "MedicationRequest", "id": "a"}},
               {"resource": {"resourceType": "MedicationRequest", "id": "b"}},
               {"resource": {"resourceType": "ServiceRequest", "id": "c"}}]}}
    assert render("Patient/{{context.patientId}}", ctx) == "Patient/p1"
    assert render("PractitionerRole/{{userPractitionerRoleId}}", ctx) == "PractitionerRole/r9"
    assert render("Practitioner/{{userPractitionerId}}", ctx) is None
    assert render("MedicationRequest?_id={{context.draftOrders.MedicationRequest.id}}", ctx) == \
        "MedicationRequest?_id=a,b"
    assert render("Encounter/{{context.encounterId}}", ctx) is None


PV = Echo("pv-prefetch", "patient-view",
          {"patient": "Patient/{{context.patientId}}", "conds": "Condition?patient={{context.patientId}}",
           "enc": "Encounter/{{context.encounterId}}"}, frozenset({"patient"}))


def test_missing_keys_are_fetched_null_keys_are_not(make_cds: Any) -> None:
    cds = make_cds(services=[PV])
    cds.mem.put({"resourceType": "Patient", "id": "p1"})
    cds.mem.put({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}})
    req = hook_request("patient-view", "p1") | {"fhirServer": "http://localhost/fhir"}
    Echo.seen.clear()
    assert cds.post("/cds-services/pv-prefetch", req | {"prefetch": {"conds": None}}).status_code == 200
    data = Echo.seen[-1]
    assert data.fetched == {"patient"} and data.values["conds"] is None
    assert "enc" not in data.values  # no encounterId in context: token unresolvable, optional key skipped
    assert cds.post("/cds-services/pv-prefetch", req).status_code == 200
    assert [r["id"] for r in Echo.seen[-1].resources("conds")] == ["c1"]


def test_required_data_unavailable_is_412(make_cds: Any) -> None:
    cds = make_cds(services=[PV])
    no_server = hook_request("patient-view", "p1")
    assert cds.post("/cds-services/pv-prefetch", no_server).status_code == 412
    null_patient = no_server | {"prefetch": {"patient": None}}
    assert cds.post("/cds-services/pv-prefetch", null_patient).status_code == 412
    unknown = hook_request("patient-view", "ghost") | {"fhirServer": "http://localhost/fhir"}
    assert cds.post("/cds-services/pv-prefetch", unknown).status_code == 412


def test_prefetch_over_http_uses_fhir_authorization(make_cds: Any, fhir_http: Any) -> None:
    cds = make_cds(services=[PV])
    remote = fhir_http(fhir_http_app(cds.mem, token="s3cret"))
    cds.mem.put({"resourceType": "Patient", "id": "p1"})
    cds.mem.put({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}})
    auth = {"access_token": "s3cret", "token_type": "Bearer", "expires_in": 300,
            "scope": "patient/*.read", "subject": "cds-service"}
    req = hook_request("patient-view", "p1") | {"fhirServer": remote.url + "/fhir", "fhirAuthorization": auth}
    Echo.seen.clear()
    assert cds.post("/cds-services/pv-prefetch", req).status_code == 200
    assert Echo.seen[-1].fetched == {"patient", "conds"}
    bad = req | {"fhirAuthorization": auth | {"access_token": "wrong"}}
    assert cds.post("/cds-services/pv-prefetch", bad).status_code == 412
    no_auth = req | {"fhirAuthorization": {"access_token": "x"}}
    assert cds.post("/cds-services/pv-prefetch", no_auth).status_code == 400


def test_feedback_is_stored_and_counted(make_cds: Any) -> None:
    cds = make_cds(services=ECHOES)
    fb = {"feedback": [
        {"card": "c-1", "outcome": "accepted", "acceptedSuggestions": [{"id": "s-1"}],
         "outcomeTimestamp": "2026-11-28T10:00:00Z"},
        {"card": "c-2", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:01:00Z",
         "overrideReason": {"reason": {"code": "benefit-outweighs-risk", "system": "x"},
                            "userComment": "discussed"}}]}
    assert cds.post("/cds-services/pv/feedback", fb).get_json() == {"stored": 2}
    assert cds.post("/cds-services/pv/feedback", {"feedback": [fb["feedback"][0]]}).status_code == 200
    assert cds.get("/cds-services/pv/feedback").get_json() == {"service": "pv", "accepted": 2, "overridden": 1}
    assert cds.runtime.store.feedback_counts()["pv"]["overridden"] == 1
    bad = {"feedback": [{"card": "c", "outcome": "ignored", "outcomeTimestamp": "yesterday"}]}
    r = cds.post("/cds-services/pv/feedback", bad)
    assert r.status_code == 400 and "outcome" in r.get_data(as_text=True)
    assert cds.post("/cds-services/nope/feedback", fb).status_code == 404


def test_validator_accepts_bundle_prefetch_and_rejects_bad_fhir_server() -> None:
    req = corpus("cdshooks-request-patient-view-good.json")
    req["prefetch"]["item3"] = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "Condition", "id": "x"}}]}
    validate_request(req, "patient-view")
    with pytest.raises(CdsError) as exc:
        validate_request(req | {"fhirServer": "ftp://x"}, "patient-view")
    assert exc.value.status == 400
    assert CORPUS.exists()


class Mixed(CdsService):
    """One valid card, one invalid card, a valid and an invalid systemAction set, or a crash."""

    id, hook, title, description = "mixed", "patient-view", "mixed", "test service"
    mode = "cards"

    def invoke(self, request: dict[str, Any], data: PrefetchData, env: ServiceEnv) -> CdsResponse:
        from cds_hooks.cards import Action, Card

        if Mixed.mode == "crash":
            raise RuntimeError("bug")
        good = Card("ok", "info", "src")
        bad = Card("bad", "danger", "src")
        if Mixed.mode == "cards":
            return CdsResponse(cards=[good, bad])
        action = Action("update", "Mark reviewed", {"resourceType": "Task", "id": "t1", "status": "completed",
                                                    "intent": "order"})
        broken = Action("create", "no resource")
        return CdsResponse(system_actions=[action] if Mixed.mode == "actions" else [action, broken])


def test_invalid_cards_are_dropped_system_actions_pass_and_crashes_are_500(make_cds: Any) -> None:
    cds = make_cds(services=[Mixed()])
    req = hook_request("patient-view", "p1")
    Mixed.mode = "cards"
    assert [c["summary"] for c in cds.post("/cds-services/mixed", req).get_json()["cards"]] == ["ok"]
    Mixed.mode = "actions"
    body = cds.post("/cds-services/mixed", req).get_json()
    assert body["cards"] == [] and body["systemActions"][0]["resource"]["resourceType"] == "Task"
    assert check_response(body) == []
    Mixed.mode = "broken-actions"
    assert cds.post("/cds-services/mixed", req).get_json() == {"cards": []}
    Mixed.mode = "crash"
    r = cds.post("/cds-services/mixed", req)
    assert r.status_code == 500 and r.get_json()["resourceType"] == "OperationOutcome"
    assert "bug" not in r.get_data(as_text=True)


class Slow(CdsService):
    id, hook, title, description = "slow", "patient-view", "slow", "test service"

    def __init__(self) -> None:
        import threading

        self.ready = threading.Event()

    def warm(self, settings: Any) -> None:
        assert settings is not None
        self.ready.set()


def test_warm_up_runs_in_the_background_only_when_enabled(make_cds: Any) -> None:
    off, on = Slow(), Slow()
    make_cds(services=[off])
    make_cds(services=[on], cds_warm="on")
    assert on.ready.wait(10) and not off.ready.is_set()


PLUGIN = '''
from cds_hooks.cards import Card, CdsResponse
from cds_hooks.registry import CdsService


class Hello(CdsService):
    id = "hello-{kind}"
    hook = "patient-view"
    title = "Hello from a {kind} plugin"
    description = "A third-party service in one file."

    def invoke(self, request, data, env):
        return CdsResponse([Card(summary="Hello", indicator="info", source_label="{kind} plugin")])


SERVICE = Hello()
'''


def test_a_service_in_one_file_plugs_in_by_entry_point_or_by_config(make_cds: Any, tmp_path: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two one-file services outside the package: one installed as a distribution declaring the
    ``digitalfront.cds_services`` entry point (a real dist-info on sys.path), one named in
    ``cds_service_modules``; both are discovered, listed and called like the built-in ones."""
    from cds_hooks.registry import ENTRY_POINT_GROUP

    plugins = tmp_path / "site"
    plugins.mkdir()
    (plugins / "df_hello_ep.py").write_text(PLUGIN.replace("{kind}", "ep"))
    (plugins / "df_hello_cfg.py").write_text(PLUGIN.replace("{kind}", "cfg"))
    dist = plugins / "df_hello_ep-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: df-hello-ep\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nhello = df_hello_ep:SERVICE\n")
    monkeypatch.syspath_prepend(str(plugins))
    assert {"hello-ep", "hello-cfg"} <= {s.id for s in discover(None, ["df_hello_cfg"])}
    cds = make_cds(cds_service_modules="df_hello_cfg")
    listed = cds.http.get("/cds-services", headers={"Authorization": f"Bearer {cds.token('/cds-services')}"})
    ids = {s["id"] for s in listed.get_json()["services"]}
    assert {"hello-ep", "hello-cfg", "sepsis-early-warning"} <= ids
    for sid in ("hello-ep", "hello-cfg"):
        r = cds.post(f"/cds-services/{sid}", hook_request("patient-view", "p1"))
        assert r.status_code == 200 and check_response(r.get_json()) == []
        assert r.get_json()["cards"][0]["source"]["label"] == f"{sid.split('-')[1]} plugin"
