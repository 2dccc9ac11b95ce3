"""Work done ahead of a transaction (interactions/prepared.py) equals what the transaction would do itself."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import pytest

from fhir_server.interactions.prepared import (
    PLACEHOLDER,
    PreparedEntry,
    PrepareMemo,
    conditional_references,
    fixed_index,
    prepare_bundle,
    replace_references,
    resolved_entry,
    trusted_validation,
    with_token_value,
)
from fhir_server.search.extract import Extractor
from fhir_server.search.registry import SearchParamRegistry
from fhir_server.validation import has_errors, validate_resource
from tests.conftest import shared_path
from tests.unit.interfaces.hl7_testkit import ig_messages


def synthea_bundles(n: int = 3) -> list[dict[str, Any]]:
    paths = sorted(shared_path("corpora", "synthea-r4").glob("*.json.gz"))[:n]
    return [json.loads(gzip.open(p, "rt", encoding="utf-8").read()) for p in paths]


def hl7_bundles() -> list[dict[str, Any]]:
    from interfaces.mapping import map_to_bundle
    from interfaces.parsing import parse

    out = []
    for text in ig_messages().values():
        msg, header = parse(text.encode())
        out.append(map_to_bundle(msg, header, store_id=7))
    return out


def resolved(bundle: dict[str, Any]) -> dict[str, str]:
    """What a transaction's first step would produce: every urn:uuid fullUrl -> Type/<server id>."""
    return {e["fullUrl"]: f"{e['resource']['resourceType']}/{uuid.uuid4()}" for e in bundle["entry"]
            if str(e.get("fullUrl", "")).startswith("urn:uuid:") and isinstance(e.get("resource"), dict)}


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    return Extractor(SearchParamRegistry())


@pytest.mark.parametrize("source", ["synthea", "hl7v2"])
def test_prepared_rows_and_validation_equal_the_transactions_own(source, extractor):
    bundles = synthea_bundles() if source == "synthea" else hl7_bundles()
    compared = 0
    for bundle in bundles:
        prepared = prepare_bundle(bundle, extractor)
        assert len(prepared.entries) == len(bundle["entry"])
        mapping = resolved(bundle)
        for e, entry in zip(bundle["entry"], prepared.entries, strict=True):
            if entry is None:
                continue
            final = replace_references(e["resource"], mapping)
            final["id"] = mapping.get(e.get("fullUrl", ""), "x/" + str(uuid.uuid4())).split("/", 1)[1]
            assert fixed_index(entry, mapping) == extractor.extract(final), final["resourceType"]
            mode = "create" if e["request"]["method"] == "POST" else "update"
            subject = {k: v for k, v in final.items() if k != "id"} if mode == "create" else final
            assert entry.validated == (not has_errors(validate_resource(subject, mode=mode)))
            compared += 1
    assert compared > (100 if source == "synthea" else 20)


@pytest.mark.parametrize("source", ["synthea", "hl7v2"])
def test_references_rewritten_by_recorded_path_equal_the_full_walk(source, extractor):
    bundles = synthea_bundles(2) if source == "synthea" else hl7_bundles()
    rewritten = 0
    for bundle in bundles:
        before = json.dumps(bundle)
        prepared = prepare_bundle(bundle, extractor)
        mapping = resolved(bundle)
        for e, entry in zip(bundle["entry"], prepared.entries, strict=True):
            fast = resolved_entry(e, mapping, entry)
            assert fast == replace_references(e, mapping)
            if entry is not None and fast is not e:
                rewritten += 1
                assert fast["resource"] is not e["resource"]
        assert json.dumps(bundle) == before  # the Bundle itself is never modified
    assert rewritten > 10
    # an entry nothing maps is returned as it is, not copied
    e = bundles[0]["entry"][0]
    assert resolved_entry(e, {}, prepare_bundle(bundles[0], extractor).entries[0]) is e


def test_memo_prepares_a_repeated_stand_alone_resource_once(extractor):
    bundle = hl7_bundles()[0]
    memo = PrepareMemo(size=64)
    first = prepare_bundle(bundle, extractor, memo=memo)
    assert memo.hits == 0
    again = prepare_bundle(json.loads(json.dumps(bundle)), extractor, memo=memo)  # the next message, same PID
    assert again == first  # the same work, whichever way it was obtained
    patient = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Patient")
    assert again.entries[patient] is first.entries[patient]
    # entries referring to another entry (placeholders differ per message) are never remembered
    linked = [i for i, e in enumerate(bundle["entry"]) if "urn:uuid:" in json.dumps(e["resource"])]
    assert linked and all(again.entries[i] is not first.entries[i] for i in linked)
    standalone = len(bundle["entry"]) - len(linked) - sum(1 for x in first.entries if x is None)
    assert standalone >= 1 and memo.hits == standalone
    # a changed resource is prepared again (the others still come from the memo), and an invalid one
    # stays invalid when it comes from the memo
    changed = json.loads(json.dumps(bundle))
    changed["entry"][patient]["resource"]["gender"] = "not-a-gender"
    entry = prepare_bundle(changed, extractor, memo=memo).entries[patient]
    assert entry is not None and not entry.validated and memo.hits == 2 * standalone - 1
    entry = prepare_bundle(changed, extractor, memo=memo).entries[patient]
    assert entry is not None and not entry.validated and memo.hits == 3 * standalone - 1
    small = PrepareMemo(size=1)
    prepare_bundle(bundle, extractor, memo=small)
    assert len(small._entries) == 1


def test_placeholders_stand_in_for_urn_references_so_patient_parameters_are_indexed(extractor):
    bundle = hl7_bundles()[0]
    obs = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] in ("Observation",
                                                                                               "Encounter"))
    entry = prepare_bundle(bundle, extractor).entries[obs]
    assert entry is not None and entry.index is not None
    assert any(rid and rid.startswith(PLACEHOLDER) for _i, _t, rid, _u in entry.index.reference)
    mapping = resolved(bundle)
    rows = fixed_index(entry, mapping)
    assert rows is not None and not any(rid and rid.startswith(PLACEHOLDER) for _i, _t, rid, _u in rows.reference)
    assert fixed_index(entry, {}) is None  # a placeholder the transaction did not resolve: not usable


def test_entries_that_depend_on_the_transaction_are_not_prepared(extractor):
    patient = {"resourceType": "Patient", "name": [{"family": "Doe"}]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:" + str(uuid.uuid4()), "resource": patient, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient?identifier=a|1"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:" + str(uuid.uuid4())}},  # not in this Bundle
         "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": "Patient/1"}},
    ]}
    entries = prepare_bundle(bundle, extractor).entries
    assert entries[0] is not None and entries[1:] == [None, None, None]


class Terminology:
    def __init__(self, verdict: bool | None) -> None:
        self.verdict = verdict

    def in_value_set(self, url: str, system: str, code: str) -> bool | None:
        return self.verdict


def test_validation_is_trusted_only_when_the_servers_terminology_agrees(extractor):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}]}
    entry = prepare_bundle(bundle, extractor).entries[0]
    assert entry is not None and entry.validated and entry.lookups  # Observation.status is a required binding
    assert trusted_validation(entry, None)
    assert trusted_validation(entry, Terminology(None))  # the terminology does not know: the shipped codes decide
    assert not trusted_validation(entry, Terminology(False))  # it disagrees: the transaction validates itself
    assert not trusted_validation(PreparedEntry(False, None), None)
    bad = {**obs, "status": "finished"}
    entry = prepare_bundle({**bundle, "entry": [{"resource": bad, "request": bundle["entry"][0]["request"]}]},
                           extractor).entries[0]
    assert entry is not None and not entry.validated


def test_a_transaction_ignores_work_prepared_with_other_search_parameters(tmp_path):
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from fhir_server.model import SYSTEM_CONTEXT, FhirRequest

    services = build_services(Settings(database_url=f"sqlite:///{tmp_path}/p.db", auth=False))
    bundle = hl7_bundles()[0]
    stale = prepare_bundle(bundle, Extractor(SearchParamRegistry()))
    for e in stale.entries:  # rows that would be wrong if they were used
        if e is not None and e.index is not None:
            e.index.token.clear()
    stale.registry_version = services.router.registry.version + 1
    resp = services.router.handle(FhirRequest("POST", "", resource=bundle, context=SYSTEM_CONTEXT, prepared=stale))
    assert resp.status == 200, resp.resource
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    ident = patient["identifier"][0]
    found = services.client.search("Patient", [("identifier", f"{ident.get('system', '')}|{ident['value']}")])
    assert len(found) == 1


def test_rows_offered_for_a_write_that_failed_never_index_a_later_one(tmp_path):
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from fhir_server.model import SYSTEM_CONTEXT, FhirRequest

    services = build_services(Settings(database_url=f"sqlite:///{tmp_path}/o.db", auth=False))

    def bundle(family: str, birth: str) -> dict[str, Any]:
        patient = {"resourceType": "Patient", "id": "px", "name": [{"family": family}], "birthDate": birth}
        return {"resourceType": "Bundle", "type": "transaction",
                "entry": [{"resource": patient, "request": {"method": "PUT", "url": "Patient/px"}}]}

    bad = bundle("Wrong", "1980-13-45")  # the core refuses it (no such month)
    prepared = prepare_bundle(bad, services.repo.extractor)
    with services.repo.unit_of_work() as uow:  # one transaction, one savepoint per step (HL7v2 group commit)
        with pytest.raises(Exception), uow.savepoint():
            resp = services.router.dispatch(FhirRequest("POST", "", resource=bad, context=SYSTEM_CONTEXT,
                                                        prepared=prepared), uow)
            assert resp.status >= 400
            raise RuntimeError("step failed")
        with uow.savepoint():
            resp = services.router.dispatch(FhirRequest("POST", "", resource=bundle("Right", "1980-01-01"),
                                                        context=SYSTEM_CONTEXT), uow)
            assert resp.status == 200
    assert len(services.client.search("Patient", [("family", "Right")])) == 1
    assert services.client.search("Patient", [("family", "Wrong")]) == []


def test_conditional_references_found_ahead_are_the_ones_the_transaction_resolves(tmp_path, extractor):
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from fhir_server.model import SYSTEM_CONTEXT, FhirRequest

    for bundle in synthea_bundles() + hl7_bundles():  # none of these has one: the same (empty) answer
        walked = set(conditional_references([e.get("resource") for e in bundle["entry"]]))
        found = prepare_bundle(bundle, extractor).conditional_references
        assert found is not None and set(found) == walked
    services = build_services(Settings(database_url=f"sqlite:///{tmp_path}/c.db", auth=False))
    services.client.create({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "c1"}]})
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient?identifier=urn:mrn|c1"},
           "contained": [{"resourceType": "Provenance", "recorded": "2024-01-01T00:00:00Z",
                          "target": [{"reference": "Patient?identifier=urn:mrn|c1"}],
                          "agent": [{"who": {"display": "lab"}}]}]}
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}]}
    prepared = prepare_bundle(bundle, services.repo.extractor)
    assert prepared.conditional_references == ["Patient?identifier=urn:mrn|c1"] * 2
    resp = services.router.handle(FhirRequest("POST", "", resource=bundle, context=SYSTEM_CONTEXT,
                                              prepared=prepared))
    assert resp.status == 200, resp.resource
    pid = services.client.search("Patient", [("identifier", "urn:mrn|c1")])[0]["id"]
    stored = services.client.search("Observation", [("subject", f"Patient/{pid}")])
    assert len(stored) == 1 and stored[0]["contained"][0]["target"][0]["reference"] == f"Patient/{pid}"


def test_a_token_value_changed_after_preparing_gets_the_rows_extraction_would_give(extractor):
    prov = {"resourceType": "Provenance", "target": [{"reference": "Patient/p1"}], "recorded": "2024-01-01T00:00:00Z",
            "agent": [{"who": {"display": "x"}}],
            "entity": [{"role": "source", "what": {"identifier": {"system": "urn:msg", "value": "0"}}}]}
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": prov, "request": {"method": "POST", "url": "Provenance"}}]}
    entry = prepare_bundle(bundle, extractor).entries[0]
    assert entry is not None
    changed = with_token_value(entry, "urn:msg", "0", "4711")
    final = json.loads(json.dumps(prov))
    final["entity"][0]["what"]["identifier"]["value"] = "4711"
    assert changed is not None and changed.index == extractor.extract(final)
    assert changed.index != entry.index and changed.validated == entry.validated
    # the value also indexed otherwise (here: _content, by the display): no shortcut, the transaction extracts
    prov["entity"][0]["what"] = {"identifier": {"system": "urn:msg", "value": "pending"}, "display": "pending"}
    entry = prepare_bundle(bundle, extractor).entries[0]
    assert entry is not None and with_token_value(entry, "urn:msg", "pending", "4711") is None
