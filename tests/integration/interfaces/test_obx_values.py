"""OBX-5 by value type through the real stack: what FHIR can hold is stored typed, what is not a value of its
type is kept as text, and an empty value (``^^^``, blanks) is no value. Each case here was an AE before,
refused by the FHIR core as an invalid Bundle entry (a TM ``1230`` as ``valueTime``, an empty string, a
null CodeableConcept)."""

from __future__ import annotations

import pytest

from interfaces.service import pipeline_for
from tests.integration.interfaces.test_group_commit import oru


@pytest.fixture
def services(services_factory):
    return services_factory(hl7_workers=0)  # SQLite; the writer maps (no worker processes to start)


@pytest.mark.parametrize(("vtype", "obx5", "value"), [
    ("TM", "1230", {"valueTime": "12:30:00"}),
    ("TM", "123045.5", {"valueTime": "12:30:45.5"}),
    ("TM", "1230+0100", {"valueString": "1230+0100"}),  # FHIR's time has no offset: kept whole, as text
    ("TM", "2561", {"valueString": "2561"}),
    ("DT", "20240229", {"valueDateTime": "2024-02-29"}),
    ("DT", "^^^^", {}),
    ("CE", "^^^", {}),
    ("ST", "   ", {}),
    ("TX", "line 1~line 2", {"valueString": "line 1\nline 2"}),
])
def test_obx_values_are_typed_kept_as_text_or_absent(services, vtype, obx5, value):
    p = pipeline_for(services)
    cid = f"ov-{vtype}-{obx5}"
    msg = oru(cid, mrn="760", results=1).replace(b"|NM|2345-1^Analyte 1^LN||95|",
                                                 f"|{vtype}|2345-1^Analyte 1^LN||{obx5}|".encode())
    r = p.ingest(msg, "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome
    obs = next(services.client.read(*ref.split("/")) for ref in r.resources if ref.startswith("Observation/"))
    assert {k: v for k, v in obs.items() if k.startswith("value")} == value


@pytest.mark.parametrize(("ed", "attachment"), [
    ("^AP^PDF^Base64^JVBERi0xLjQK", {"contentType": "application/pdf", "data": "JVBERi0xLjQK"}),
    ("^AP^PDF^Base64^not base64!", {"contentType": "application/pdf", "title": "not base64!"}),
    ("^AP^PDF^Base64^", None),  # no data: no attachment (was an empty base64Binary the core refused)
])
def test_an_mdm_ed_result_becomes_an_attachment_when_it_has_data(services, ed, attachment):
    from tests.unit.interfaces.hl7_testkit import ig_messages

    p = pipeline_for(services)
    sample = ig_messages()["MDM_T02"].rstrip("\r")
    r = p.ingest((sample.replace("|10819306|", f"|ed-{len(ed)}|") + f"\rOBX|99|ED|PDF^Report^L||{ed}||||||F\r")
                 .encode(), "t")
    assert r.ack_code == "AA", p.store.get(r.message_id).outcome
    doc = next(services.client.read(*ref.split("/")) for ref in r.resources if ref.startswith("DocumentReference/"))
    assert doc["content"][0]["attachment"]["contentType"] == "text/plain; charset=utf-8"  # the note's text
    assert doc["content"][1]["attachment"]["title"] == "<Base64 encoded>"  # the sample's own ED: a placeholder
    assert [c["attachment"] for c in doc["content"][2:]] == ([attachment] if attachment else [])


@pytest.mark.parametrize(("al1_5", "manifestations"), [("Sneeze", ["Sneeze"]), (" Sneeze ~Rash", ["Sneeze", "Rash"]),
                                                       ("  ", None)])
def test_allergy_reactions_are_kept_and_blank_ones_left_out(services, al1_5, manifestations):
    """AL1-5 follows the same rule as OBX-5: blanks are no value (an all-blank reaction was refused by the core)."""
    from tests.unit.interfaces.hl7_testkit import ig_messages

    p = pipeline_for(services)
    sample = ig_messages()["ADT_A01"]
    r = p.ingest(sample.replace("|MO^Moderate^HL70128|Sneeze|", f"|MO^Moderate^HL70128|{al1_5}|")
                 .replace("|4637382|", f"|al-{len(al1_5)}|").encode(), "t")
    assert r.ack_code in ("AA", "CA"), p.store.get(r.message_id).outcome
    allergy = next(services.client.read(*ref.split("/")) for ref in r.resources
                   if ref.startswith("AllergyIntolerance/"))
    found = [m["text"] for m in allergy["reaction"][0]["manifestation"]] if "reaction" in allergy else None
    assert found == manifestations
