"""v2 timestamps through the real stack: every precision the standard allows is stored, a value that is not
a timestamp is an AE naming its field (kept for replay), and FHIR ``instant`` elements get only what has a
time. (The IG's OBX map puts OBX-19 in an extension: Observation.issued is an instant.)"""

from __future__ import annotations

import pytest

from interfaces.er7 import parse_er7
from interfaces.service import pipeline_for
from tests.integration.interfaces.test_through_router import adt
from tests.unit.interfaces.hl7_testkit import ig_messages

ANALYSIS = "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time"


@pytest.fixture
def services(services_factory):
    return services_factory(hl7_workers=0)  # SQLite; the writer maps (no worker processes to start)


def lab(cid: str, *, obr7: str = "20240101110000", obr8: str = "", obr22: str = "", obx14: str = "",
        obx19: str = "") -> bytes:
    obr = ["OBR", "1", f"P{cid}^LAB", f"F{cid}^LAB", "24323-8^Panel^LN", "", "", obr7, obr8] + [""] * 13 + [obr22]
    obr += ["", "", "F"]
    obx = ["OBX", "1", "NM", "2345-7^Glucose^LN", "", "95", "mg/dL^mg/dL^UCUM", "70-99", "N", "", "", "F", "", "",
           obx14, "", "", "", "", obx19]
    return (f"MSH|^~\\&|LAB|HOSP|DF|DF|20240101120000||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
            "PID|1||730^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19800101|F\r" + "|".join(obr) + "\r"
            + "|".join(obx) + "\r").encode()


def one(services, rtype: str, cid: str) -> dict:
    found = services.client.search(rtype, [("identifier", f"F{cid}")] if rtype == "DiagnosticReport"
                                   else [("based-on:ServiceRequest.identifier", f"P{cid}")])
    assert len(found) == 1, found
    return found[0]


def test_a_date_where_fhir_wants_an_instant_is_kept_where_it_fits(services):
    p = pipeline_for(services)
    r = p.ingest(lab("ts-day", obr22="20240102", obx19="20240103"), "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome  # both were AE: '2024-01-02' is no instant
    report = one(services, "DiagnosticReport", "ts-day")
    assert "issued" not in report  # an instant needs a time; the date alone is valid v2, so not an error
    obs = services.client.read("Observation", report["result"][0]["reference"].split("/")[1])
    assert "issued" not in obs
    assert obs["extension"] == [{"url": ANALYSIS, "valueDateTime": "2024-01-03"}]  # the IG's OBX-19


def test_timestamps_keep_their_precision_and_obr8_makes_a_period(services):
    p = pipeline_for(services)
    r = p.ingest(lab("ts-full", obr7="202401011030", obr8="20240101113015-0500", obr22="202401021200",
                     obx14="2024010110", obx19="20240101111500.25+0100"), "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome
    report = one(services, "DiagnosticReport", "ts-full")
    assert report["effectivePeriod"] == {"start": "2024-01-01T10:30:00+00:00", "end": "2024-01-01T11:30:15-05:00"}
    assert "effectiveDateTime" not in report
    assert report["issued"] == "2024-01-02T12:00:00+00:00"
    obs = services.client.read("Observation", report["result"][0]["reference"].split("/")[1])
    assert obs["effectiveDateTime"] == "2024-01-01T10:00:00+00:00"
    assert obs["extension"] == [{"url": ANALYSIS, "valueDateTime": "2024-01-01T11:15:00.25+01:00"}]


@pytest.mark.parametrize(("field", "value", "location"), [
    ("obx14", "20241345", "OBX^1^14"),  # month 13
    ("obx14", "2024-01-01", "OBX^1^14"),  # not the v2 format (was dropped in silence)
    ("obr7", "20230229", "OBR^1^7"),  # no 29 February in 2023
    ("obr22", "2024010124", "OBR^1^22"),  # hour 24
    ("obx19", "20240101120000+1500", "OBX^1^19"),  # an offset no clock has
])
def test_a_value_that_is_no_timestamp_is_ae_naming_the_field_and_kept(services, field, value, location):
    p = pipeline_for(services)
    cid = f"ts-bad-{field}-{value}"
    r = p.ingest(lab(cid, **{field: value}), "t")
    assert r.ack_code == "AE" and r.status == "error"
    err = parse_er7(r.acks[0].decode()).first("ERR")
    seg, seq, pos = location.split("^")
    assert (err.get(2, 1), err.get(2, 2), err.get(2, 3), err.get(3, 1)) == (seg, seq, pos, "102")
    stored = p.store.get(r.message_id)
    assert stored.outcome["location"] == location and value in stored.outcome["error"]
    assert not services.client.search("DiagnosticReport", [("identifier", f"F{cid}")])  # nothing half-written


def test_an_adt_with_an_impossible_admit_time_is_ae_on_pv1_44(services):
    p = pipeline_for(services)
    r = p.ingest(adt("A01", "ts-adt").replace(b"|20240101110000|", b"|20240230110000|"), "t")
    assert r.ack_code == "AE" and p.store.get(r.message_id).outcome["location"] == "PV1^1^44"
    assert not services.client.search("Patient", [("identifier", "urn:oid:1.2.3|500")])


def test_document_date_is_an_instant_from_txa6_else_txa4(services):
    p = pipeline_for(services)
    sample = ig_messages()["MDM_T02"]
    txa = next(s for s in sample.split("\r") if s.startswith("TXA|"))

    def with_txa(cid: str, txa4: str, txa6: str) -> bytes:
        f = txa.split("|")
        f[4], f[6] = txa4, txa6
        msh, rest = sample.split("\r", 1)
        msh = msh.replace("|10819306|", f"|{cid}|")
        return (msh + "\r" + rest.replace(txa, "|".join(f))).encode()

    dates = []
    for cid, txa4, txa6 in [("ts-d1", "20230820174913", "20230821081500"), ("ts-d2", "20230820174913", "20230821"),
                            ("ts-d3", "20230820", "20230821")]:
        r = p.ingest(with_txa(cid, txa4, txa6), "t")
        assert r.ack_code == "AA", p.store.get(r.message_id).outcome
        doc = next(services.client.read(*ref.split("/")) for ref in r.resources if ref.startswith("DocumentReference/"))
        dates.append(doc.get("date"))
    assert dates == ["2023-08-21T08:15:00+00:00", "2023-08-20T17:49:13+00:00", None]


def test_an_appointment_needs_times_not_dates(services):
    """Appointment.start/end are instants, and a booked appointment must have both (FHIR app-3): a date-only
    SCH-11 is an AE naming the field, not an appointment with no time."""
    p = pipeline_for(services)
    sample = ig_messages()["SIU_S12"]
    timed = p.ingest(sample.encode(), "t")
    assert timed.ack_code == "AA"
    appt = next(services.client.read(*ref.split("/")) for ref in timed.resources if ref.startswith("Appointment/"))
    assert (appt["start"], appt["end"]) == ("2015-06-13T14:00:00+00:00", "2016-06-21T14:15:00+00:00")
    dated = p.ingest(sample.replace("^^15^20150613140000^20160621141500", "^^15^20150613^20160621")
                     .replace("|48907-45|", "|ts-siu|").encode(), "t")
    assert dated.ack_code == "AE"
    outcome = p.store.get(dated.message_id).outcome
    assert outcome["location"] == "SCH^1^11" and "'20150613' has no time" in outcome["error"]


@pytest.mark.parametrize(("pid7", "ack", "birth"), [
    ("198001011230", "AA", ("1980-01-01", "1980-01-01T12:30:00+00:00")),
    ("19800101", "AA", ("1980-01-01", None)),
    ("2024022930", "AE", None),  # hour 30: the date is good, the time is not (was a birthTime extension of null)
])
def test_a_birth_time_is_checked_as_well_as_the_birth_date(services, pid7, ack, birth):
    p = pipeline_for(services)
    r = p.ingest(adt("A01", f"ts-born-{pid7}", mrn="731").replace(b"|19800101|", f"|{pid7}|".encode()), "t")
    assert r.ack_code == ack, p.store.get(r.message_id).outcome
    if ack == "AE":
        assert p.store.get(r.message_id).outcome["location"] == "PID^1^7"
        return
    patient = next(services.client.read(*ref.split("/")) for ref in r.resources if ref.startswith("Patient/"))
    time_ext = patient.get("_birthDate", {}).get("extension", [{}])[0].get("valueDateTime")
    assert (patient["birthDate"], time_ext) == birth


@pytest.mark.parametrize(("sch9", "minutes"), [("15", 15), ("0", None), ("123456789012", None), ("1.5", None)])
def test_an_appointment_duration_is_kept_only_as_a_positive_int(services, sch9, minutes):
    p = pipeline_for(services)
    sample = ig_messages()["SIU_S12"]
    sch = next(s for s in sample.split("\r") if s.startswith("SCH|"))
    fields = sch.split("|")
    fields[9] = sch9
    r = p.ingest(sample.replace(sch, "|".join(fields)).replace("|48907-45|", f"|ts-dur-{sch9}|").encode(), "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome  # 123456789012 was refused by the core
    appt = next(services.client.read(*ref.split("/")) for ref in r.resources if ref.startswith("Appointment/"))
    assert appt.get("minutesDuration") == minutes


def test_hl7s_explicit_null_in_a_timestamp_field_is_no_value_not_an_error(services):
    """``""`` is HL7's "delete this value" (an A08 clearing a discharge time, say): no value, never an AE."""
    p = pipeline_for(services)
    r = p.ingest(adt("A08", "ts-null", mrn="732", end='""'), "t")  # PV1-45 ""
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome
    encounter = next(services.client.read(*ref.split("/")) for ref in r.resources if ref.startswith("Encounter/"))
    assert encounter["period"] == {"start": "2024-01-01T11:00:00+00:00"}
