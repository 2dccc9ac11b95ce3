from __future__ import annotations

import base64
import uuid

import numpy as np
import pytest
import requests

from inference.imaging.dicom import preprocess, read_dicom
from inference.inprocess import InProcessClient
from tests.integration.inference.inference_helpers import dicom_file

FHIR_JSON = {"Content-Type": "application/fhir+json"}
RESOURCE_TYPES = ("ImagingStudy", "DiagnosticReport", "Observation", "Provenance", "Device", "Patient")


def counts(base: str) -> dict[str, int]:
    return {t: requests.get(f"{base}/{t}", params={"_summary": "count"}, timeout=30).json()["total"]
            for t in RESOURCE_TYPES}


def params(by_name: dict, name: str) -> list:
    return [p for p in by_name["parameter"] if p["name"] == name]


def expected_probability(name: str) -> float:
    x = preprocess(read_dicom(dicom_file(name)))
    out = InProcessClient().infer("imaging_cnn", {"image__0": x})["probabilities__0"]
    return float(np.max(out[:, 1]))


def test_analyze_raw_dicom_writes_study_report_observation_provenance(services_factory, db_url,
                                                                      inference_server_factory):
    live = inference_server_factory(database_url=db_url)
    base = live.base
    r = requests.post(f"{base}/ImagingStudy/$analyze", data=dicom_file("CT_small.dcm"),
                      headers={"Content-Type": "application/dicom"}, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["resourceType"] == "Parameters"
    study_ref = params(out, "imagingStudy")[0]["valueReference"]["reference"]
    report_ref = params(out, "report")[0]["valueReference"]["reference"]
    (obs_param,) = params(out, "observation")
    study = requests.get(f"{base}/{study_ref}", timeout=30).json()
    inst = read_dicom(dicom_file("CT_small.dcm"))
    assert study["identifier"][0]["value"] == f"urn:oid:{inst.study_uid}"
    assert study["modality"][0]["code"] == "CT"
    assert study["series"][0]["instance"][0]["uid"] == inst.sop_uid
    patient = requests.get(f"{base}/{study['subject']['reference']}", timeout=30).json()
    assert patient["identifier"][0]["value"] == inst.patient_id

    report = requests.get(f"{base}/{report_ref}", timeout=30).json()
    assert report["imagingStudy"] == [{"reference": study_ref}]
    obs = requests.get(f"{base}/{obs_param['valueReference']['reference']}", timeout=30).json()
    assert report["result"] == [{"reference": obs_param["valueReference"]["reference"]}]
    assert obs["valueQuantity"]["value"] == pytest.approx(expected_probability("CT_small.dcm"), abs=1e-4)
    assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"

    prov = requests.get(f"{base}/Provenance", params={"target": report_ref}, timeout=30).json()
    (entry,) = prov["entry"]
    device_ref = entry["resource"]["agent"][0]["who"]["reference"]
    device = requests.get(f"{base}/{device_ref}", timeout=30).json()
    assert device["deviceName"][0]["name"] == "imaging_cnn" and device["version"] == [{"value": "1"}]

    # The same study again: the ImagingStudy and Device are reused, a second report is written.
    r2 = requests.post(f"{base}/ImagingStudy/$analyze", data=dicom_file("CT_small.dcm"),
                       headers={"Content-Type": "application/dicom"}, timeout=60)
    assert r2.status_code == 200
    assert params(r2.json(), "imagingStudy")[0]["valueReference"]["reference"] == study_ref
    c = counts(base)
    assert (c["ImagingStudy"], c["DiagnosticReport"], c["Device"], c["Patient"]) == (1, 2, 1, 1)


def test_parameters_with_attachment_subject_and_binary_reference(inference_server):
    base = inference_server.base
    patient = requests.post(f"{base}/Patient", json={"resourceType": "Patient", "name": [{"family": "Scan"}]},
                            headers=FHIR_JSON, timeout=30).json()
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "dicom", "valueAttachment": {"contentType": "application/dicom",
                                              "data": base64.b64encode(dicom_file("MR_small.dcm")).decode()}},
        {"name": "subject", "valueReference": {"reference": f"Patient/{patient['id']}"}},
    ]}
    r = requests.post(f"{base}/ImagingStudy/$analyze", json=body, headers=FHIR_JSON, timeout=60)
    assert r.status_code == 200, r.text
    study = requests.get(f"{base}/{params(r.json(), 'imagingStudy')[0]['valueReference']['reference']}",
                         timeout=30).json()
    assert study["subject"] == {"reference": f"Patient/{patient['id']}"}

    binary = requests.post(f"{base}/Binary", headers=FHIR_JSON, timeout=30, json={
        "resourceType": "Binary", "contentType": "application/dicom",
        "data": base64.b64encode(dicom_file("rtdose.dcm")).decode()}).json()
    r = requests.post(f"{base}/ImagingStudy/$analyze", headers=FHIR_JSON, timeout=60, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "binary", "valueReference": {"reference": f"Binary/{binary['id']}"}},
            {"name": "subject", "valueReference": {"reference": f"Patient/{patient['id']}"}}]})
    assert r.status_code == 200, r.text
    (finding,) = params(r.json(), "finding")
    assert {p["name"]: p for p in finding["part"]}["frames"]["valueInteger"] == 15
    obs_ref = params(r.json(), "observation")[0]["valueReference"]["reference"]
    obs = requests.get(f"{base}/{obs_ref}", timeout=30).json()
    assert len(obs["component"]) == 15
    assert obs["valueQuantity"]["value"] == max(c["valueQuantity"]["value"] for c in obs["component"])


@pytest.mark.parametrize("name, status", [("MR_truncated.dcm", 400), ("README.txt", 400),
                                          ("JPEG2000.dcm", 422), ("rtplan.dcm", 422)])
def test_bad_dicom_is_refused_and_nothing_is_written(inference_server, name, status):
    base = inference_server.base
    before = counts(base)
    r = requests.post(f"{base}/ImagingStudy/$analyze", data=dicom_file(name),
                      headers={"Content-Type": "application/dicom"}, timeout=60)
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert counts(base) == before


def test_a_bad_file_among_good_ones_writes_nothing(inference_server):
    base = inference_server.base
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "dicom", "valueAttachment": {"data": base64.b64encode(dicom_file(n)).decode()}}
        for n in ("CT_small.dcm", "MR_small_jpeg_ls_lossless.dcm")]}
    r = requests.post(f"{base}/ImagingStudy/$analyze", json=body, headers=FHIR_JSON, timeout=60)
    assert r.status_code == 422 and "JPEG-LS" in r.text
    assert set(counts(base).values()) == {0}


@pytest.mark.parametrize("body, match", [
    ({"resourceType": "Patient"}, "Parameters"),
    ({"resourceType": "Parameters", "parameter": []}, "no DICOM"),
    ({"resourceType": "Parameters", "parameter": [{"name": "dicom", "valueAttachment": {"data": "%%%"}}]},
     "base64"),
    ({"resourceType": "Parameters", "parameter": [{"name": "binary",
                                                   "valueReference": {"reference": "Patient/1"}}]}, "Binary"),
])
def test_bad_parameters(inference_server, body, match):
    r = requests.post(f"{inference_server.base}/ImagingStudy/$analyze", json=body, headers=FHIR_JSON, timeout=30)
    assert r.status_code == 400 and match in r.text


def test_get_is_not_accepted(inference_server):
    r = requests.get(f"{inference_server.base}/ImagingStudy/$analyze", timeout=30)
    assert 400 <= r.status_code < 500 and r.json()["resourceType"] == "OperationOutcome"


def test_missing_binary_is_404(inference_server):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "binary", "valueReference": {"reference": f"Binary/{uuid.uuid4()}"}}]}
    r = requests.post(f"{inference_server.base}/ImagingStudy/$analyze", json=body, headers=FHIR_JSON, timeout=30)
    assert r.status_code == 404


def _multipart(parts: list[bytes], boundary: str = "df-boundary") -> tuple[bytes, str]:
    body = b""
    for p in parts:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_stow_rs_stores_good_parts_and_reports_failed_ones(inference_server):
    base = inference_server.base
    body, ctype = _multipart([dicom_file("CT_small.dcm"), dicom_file("MR_small.dcm"), b"not dicom at all"])
    r = requests.post(f"{inference_server.url}/dicomweb/studies", data=body, headers={"Content-Type": ctype},
                      timeout=60)
    assert r.status_code == 202, r.text
    assert r.headers["Content-Type"].startswith("application/dicom+json")
    out = r.json()
    stored = [i["00081155"]["Value"][0] for i in out["00081199"]["Value"]]
    assert stored == [read_dicom(dicom_file(n)).sop_uid for n in ("CT_small.dcm", "MR_small.dcm")]
    assert out["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    c = counts(base)
    assert c["ImagingStudy"] == 2 and c["DiagnosticReport"] == 2

    body, ctype = _multipart([dicom_file("CT_small.dcm")])
    r = requests.post(f"{inference_server.url}/dicomweb/studies?analyze=false", data=body,
                      headers={"Content-Type": ctype}, timeout=60)
    assert r.status_code == 200 and "00081198" not in r.json()
    assert counts(base)["DiagnosticReport"] == 2  # no new analysis


def test_stow_rs_refusals(inference_server):
    url = f"{inference_server.url}/dicomweb/studies"
    r = requests.post(url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"
    body, ctype = _multipart([b"garbage"])
    r = requests.post(url, data=body, headers={"Content-Type": ctype}, timeout=30)
    assert r.status_code == 409
    inst = read_dicom(dicom_file("CT_small.dcm"))
    body, ctype = _multipart([dicom_file("CT_small.dcm")])
    r = requests.post(f"{url}/1.2.3.4", data=body, headers={"Content-Type": ctype}, timeout=30)
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081155"]["Value"] == [inst.sop_uid]


def test_models_endpoint_and_metrics(inference_server):
    r = requests.get(f"{inference_server.url}/inference/models", timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["backend"] == "inprocess"
    names = {m["name"] for m in body["models"]}
    assert {"imaging_cnn", "readmission_risk"} <= names
    one = requests.get(f"{inference_server.url}/inference/models/imaging_cnn", timeout=30).json()
    assert one["ready"] is True and one["card"]["demo_model"] is True
    assert requests.get(f"{inference_server.url}/inference/models/nope", timeout=30).status_code == 404
    requests.post(f"{inference_server.base}/ImagingStudy/$analyze", data=dicom_file("MR_small.dcm"),
                  headers={"Content-Type": "application/dicom"}, timeout=60)
    prom = requests.get(f"{inference_server.url}/inference/metrics", timeout=30).text
    assert 'digitalfront_inference_requests_total{backend="inprocess",model="imaging_cnn"}' in prom


def test_stow_rs_uses_the_servers_authenticator(services_factory):
    """With auth on, STOW-RS goes through services.authenticator like the FHIR API (401 without a token)."""
    from fhir_server.errors import unauthorized
    from fhir_server.model import RequestContext
    from tests.integration.inference.inference_helpers import build_app, serve

    services = services_factory(auth=True)

    def authenticate(headers):
        if headers.get("Authorization") != "Bearer good":
            raise unauthorized("An access token is required")
        return RequestContext(scopes=frozenset({"system/*.*"}), client_id="pacs")

    services.authenticator = authenticate
    live, stop = serve(build_app(services))
    try:
        body, ctype = _multipart([dicom_file("CT_small.dcm")])
        r = requests.post(f"{live.url}/dicomweb/studies", data=body, headers={"Content-Type": ctype}, timeout=30)
        assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
        r = requests.post(f"{live.url}/dicomweb/studies", data=body, timeout=60,
                          headers={"Content-Type": ctype, "Authorization": "Bearer good"})
        assert r.status_code == 200, r.text
    finally:
        stop()


def test_media_reference_and_body_site(inference_server):
    """A Media holding the DICOM (inline, or as a url to a Binary) is analysed like a Binary; DICOM
    BodyPartExamined (ABDOMEN in pydicom's examples_overlay.dcm) becomes the series' and the finding's
    bodySite as SNOMED CT."""
    base = inference_server.base
    blob = base64.b64encode(dicom_file("examples_overlay.dcm")).decode()
    binary = requests.post(f"{base}/Binary", headers=FHIR_JSON, timeout=30, json={
        "resourceType": "Binary", "contentType": "application/dicom", "data": blob}).json()
    abdomen = {"system": "http://snomed.info/sct", "code": "818983003", "display": "Abdomen"}
    for content in ({"contentType": "application/dicom", "data": blob},
                    {"contentType": "application/dicom", "url": f"Binary/{binary['id']}"}):
        media = requests.post(f"{base}/Media", headers=FHIR_JSON, timeout=30, json={
            "resourceType": "Media", "status": "completed", "content": content}).json()
        r = requests.post(f"{base}/ImagingStudy/$analyze", headers=FHIR_JSON, timeout=60, json={
            "resourceType": "Parameters", "parameter": [
                {"name": "binary", "valueReference": {"reference": f"Media/{media['id']}"}}]})
        assert r.status_code == 200, r.text
        study = requests.get(f"{base}/{params(r.json(), 'imagingStudy')[0]['valueReference']['reference']}",
                             timeout=30).json()
        assert study["series"][0]["bodySite"] == abdomen
        obs = requests.get(f"{base}/{params(r.json(), 'observation')[0]['valueReference']['reference']}",
                           timeout=30).json()
        assert obs["bodySite"] == {"coding": [abdomen]}
    empty = requests.post(f"{base}/Media", headers=FHIR_JSON, timeout=30, json={
        "resourceType": "Media", "status": "completed", "content": {"contentType": "application/dicom"}}).json()
    r = requests.post(f"{base}/ImagingStudy/$analyze", headers=FHIR_JSON, timeout=60, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "binary", "valueReference": {"reference": f"Media/{empty['id']}"}}]})
    assert r.status_code == 422 and "neither inline data nor a Binary url" in r.text
