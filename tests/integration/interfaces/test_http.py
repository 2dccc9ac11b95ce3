"""POST /hl7v2 and the message-store endpoints over a real WSGI server (lead's live_server fixture)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from interfaces.client import ack_code
from tests.unit.interfaces.hl7_testkit import ig_messages


def call(url: str, data: bytes | None = None, ctype: str = "x-application/hl7-v2+er7") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": ctype} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_post_hl7v2_then_list_and_link_resources(live_server):
    msg = ig_messages()["ORU_R01"].encode()
    status, body = call(live_server.url + "/hl7v2", msg)
    # the IG sample asks for enhanced mode (MSH-15/16): a commit ACK (CA), then the application ACK (AA)
    acks = [a for a in body.split(b"\rMSH") if a]
    assert status == 200 and ack_code(body) == "CA" and b"MSA|AA|" in acks[-1], body
    status, body = call(live_server.url + "/hl7v2/messages?status=processed&type=ORU")
    listed = json.loads(body)["messages"]
    assert status == 200 and len(listed) == 1
    doc = next(r for r in listed[0]["resources"] if r["reference"].startswith("DiagnosticReport/"))
    status, body = call(doc["url"])
    assert status == 200 and json.loads(body)["resourceType"] == "DiagnosticReport"
    status, body = call(live_server.url + "/hl7v2/metrics")
    assert b'digitalfront_hl7v2_messages{status="processed"} 1' in body


def test_bad_requests_are_operation_outcomes(live_server):
    status, body = call(live_server.url + "/hl7v2", b"{}", ctype="application/json")
    assert status == 415 and json.loads(body)["resourceType"] == "OperationOutcome"
    status, body = call(live_server.url + "/hl7v2/messages?since=yesterday")
    assert status == 400 and json.loads(body)["resourceType"] == "OperationOutcome"
    status, body = call(live_server.url + "/hl7v2/messages?type=%00")  # PostgreSQL refused the SQL: a 500
    assert status == 400 and json.loads(body)["resourceType"] == "OperationOutcome"
    status, body = call(live_server.url + "/hl7v2/messages?status=proccessed")  # a typo, not "none found"
    assert status == 400 and "status must be one of received, processed" in body.decode(), body
    status, body = call(live_server.url + "/hl7v2/messages/999999")
    assert status == 404
    status, body = call(live_server.url + "/hl7v2", b"not hl7")
    assert status == 400 and ack_code(body) == "AR"
    # an id past 64 bits failed in the database driver (an HTML 500); it is simply not there
    for url in ("/hl7v2/messages/99999999999999999999999", "/hl7v2/messages/99999999999999999999999/replay"):
        status, body = call(live_server.url + url, b"" if url.endswith("replay") else None)
        assert status == 404 and json.loads(body)["resourceType"] == "OperationOutcome", (url, body)


def test_unexpected_errors_are_operation_outcomes_not_html(live_server, monkeypatch):
    pipeline = live_server.app.extensions["hl7v2_pipeline"]

    def broken() -> dict[str, int]:
        raise RuntimeError("the message store is gone")

    monkeypatch.setattr(pipeline.store, "counts", broken)
    status, body = call(live_server.url + "/hl7v2/stats")
    outcome = json.loads(body)
    assert status == 500 and outcome["resourceType"] == "OperationOutcome"
    assert "the message store is gone" not in body.decode()  # logged, not shown


def test_body_over_the_limit_is_an_operation_outcome(live_server_factory):
    live = live_server_factory(max_body_bytes=1024)
    status, body = call(live.url + "/hl7v2", ig_messages()["ORU_R01"].encode() * 4)
    assert status == 413 and json.loads(body)["resourceType"] == "OperationOutcome", body


def test_a_batch_posted_is_ingested_message_by_message_and_answered_with_a_batch_ack(live_server):
    """FHS/BHS ... BTS/FTS over HTTP, as `hl7 send` reads batch files: each message is ingested as if sent
    alone (one refused does not fail the rest) and the answer is a BHS ... BTS batch of their ACKs."""
    from tests.integration.interfaces.test_through_router import adt

    bad = adt("A01", "hb-2", mrn="771").replace(b"|19800101|", b"|1980-01-01|")
    batch = (b"FHS|^~\\&|ADM|HOSP\rBHS|^~\\&|ADM|HOSP\r" + adt("A01", "hb-1", mrn="770") + bad
             + adt("A08", "hb-3", mrn="770", family="Later") + b"BTS|3\rFTS|1\r")
    req = urllib.request.Request(live_server.url + "/hl7v2", data=batch, method="POST",
                                 headers={"Content-Type": "x-application/hl7-v2+er7"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        status, body, codes = resp.status, resp.read(), resp.headers["X-HL7-Ack-Code"]
        ids = resp.headers["X-HL7-Message-Id"].split(",")
    assert status == 200 and codes == "AA,AE,AA"
    assert body.startswith(b"BHS|^~\\&|DIGITALFRONT|") and body.endswith(b"BTS|3\r")
    assert [line.split(b"|")[1:3] for line in body.split(b"\r") if line.startswith(b"MSA|")] == \
        [[b"AA", b"hb-1"], [b"AE", b"hb-2"], [b"AA", b"hb-3"]]
    status, listed = call(live_server.url + "/hl7v2/messages?sender=ADM")
    assert sorted(str(m["id"]) for m in json.loads(listed)["messages"]) == sorted(ids)
    status, body = call(live_server.url + "/hl7v2", b"FHS|^~\\&\rBHS|^~\\&\rBTS|0\rFTS|1\r")
    assert status == 400 and "no message" in json.loads(body)["issue"][0]["diagnostics"]


def test_messages_found_by_control_id_patient_and_content(live_server):
    from tests.integration.interfaces.test_through_router import adt

    for cid, mrn in (("find-1", "880"), ("find-2", "881"), ("find-3", "880")):
        assert call(live_server.url + "/hl7v2", adt("A01", cid, mrn=mrn))[0] == 200
    status, body = call(live_server.url + "/hl7v2/messages?controlId=find-2")
    assert status == 200 and [m["controlId"] for m in json.loads(body)["messages"]] == ["find-2"]
    query = urllib.parse.urlencode({"contains": "PID|1||880^", "type": "ADT"})
    status, body = call(live_server.url + "/hl7v2/messages?" + query)
    assert status == 200 and [m["controlId"] for m in json.loads(body)["messages"]] == ["find-3", "find-1"]
    status, body = call(live_server.url + "/hl7v2/messages?patient=880")
    assert status == 200 and [m["controlId"] for m in json.loads(body)["messages"]] == ["find-3", "find-1"]
    status, body = call(live_server.url + "/hl7v2/messages?contains=" + "x" * 201)
    assert status == 400 and json.loads(body)["resourceType"] == "OperationOutcome"
