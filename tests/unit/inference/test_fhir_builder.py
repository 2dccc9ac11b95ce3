from __future__ import annotations

import io

import pydicom

from inference.imaging import fhir_builder as fb
from inference.imaging.dicom import read_dicom


def _instances(dicom_bytes):
    a = read_dicom(dicom_bytes("CT_small.dcm"))
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes("CT_small.dcm")))
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".2"
    ds.InstanceNumber = 2
    buf = io.BytesIO()
    ds.save_as(buf)
    return a, read_dicom(buf.getvalue())


def test_merge_is_idempotent_per_sop_instance(dicom_bytes):
    a, b = _instances(dicom_bytes)
    subj = {"reference": "Patient/p1"}
    study = fb.merge_imaging_study(None, [a], subj)
    assert study["identifier"] == [{"system": "urn:dicom:uid", "value": f"urn:oid:{a.study_uid}"}]
    assert study["numberOfSeries"] == 1 and study["numberOfInstances"] == 1
    assert study["modality"] == [{"system": fb.DCM_SYSTEM, "code": "CT"}]
    again = fb.merge_imaging_study(study, [a, b], subj)
    assert again["numberOfInstances"] == 2
    assert [i["uid"] for i in again["series"][0]["instance"]] == [a.sop_uid, b.sop_uid]
    assert fb.merge_imaging_study(again, [b], subj)["numberOfInstances"] == 2


def test_transaction_links_report_observations_provenance_and_device(dicom_bytes):
    a, b = _instances(dicom_bytes)
    subj = {"reference": "Patient/p1"}
    model = fb.ModelRef("imaging_cnn", "1", "nodule", demo=True)
    findings = [fb.Finding(a, 0.91, [0.91], True), fb.Finding(b, 0.12, [0.12], False)]
    study_url = fb.urn()
    bundle = fb.build_transaction(study=fb.merge_imaging_study(None, [a, b], subj), study_full_url=study_url,
                                  study_request={"method": "POST", "url": "ImagingStudy"},
                                  findings=findings, subject=subj, model=model)
    assert bundle["type"] == "transaction"
    by_type = {}
    for e in bundle["entry"]:
        by_type.setdefault(e["resource"]["resourceType"], []).append(e)
    assert sorted(by_type) == ["Device", "DiagnosticReport", "ImagingStudy", "Observation", "Provenance"]
    device_url = by_type["Device"][0]["fullUrl"]
    obs = [e["resource"] for e in by_type["Observation"]]
    assert [o["valueQuantity"]["value"] for o in obs] == [0.91, 0.12]
    assert obs[0]["valueQuantity"]["code"] == "1" and obs[0]["device"] == {"reference": device_url}
    assert [o["interpretation"][0]["coding"][0]["code"] for o in obs] == ["POS", "NEG"]
    report = by_type["DiagnosticReport"][0]["resource"]
    assert report["imagingStudy"] == [{"reference": study_url}]
    assert {r["reference"] for r in report["result"]} == {e["fullUrl"] for e in by_type["Observation"]}
    assert "1 of 2" in report["conclusion"] and "demo model" in report["conclusion"]
    prov = by_type["Provenance"][0]["resource"]
    assert prov["agent"][0]["who"]["reference"] == device_url
    assert by_type["DiagnosticReport"][0]["fullUrl"] in {t["reference"] for t in prov["target"]}
    device = by_type["Device"][0]["resource"]
    assert device["identifier"][0]["value"] == "imaging_cnn:1" and device["version"] == [{"value": "1"}]


def test_existing_device_is_referenced_not_recreated(dicom_bytes):
    a, _ = _instances(dicom_bytes)
    model = fb.ModelRef("imaging_cnn", "1", "nodule", demo=True, device_id="d9")
    bundle = fb.build_transaction(study=fb.merge_imaging_study(None, [a], {"reference": "Patient/p"}),
                                  study_full_url="ImagingStudy/s1", study_request={"method": "PUT",
                                                                                   "url": "ImagingStudy/s1"},
                                  findings=[fb.Finding(a, 0.5, [0.5], True)], subject={"reference": "Patient/p"},
                                  model=model)
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert "Device" not in types
    prov = bundle["entry"][-1]["resource"]
    assert prov["agent"][0]["who"]["reference"] == "Device/d9"


def test_patient_from_dicom_header(dicom_bytes):
    a = read_dicom(dicom_bytes("CT_small.dcm"))
    p = fb.patient_resource(a)
    assert p["identifier"][0] == {"system": fb.PATIENT_ID_SYSTEM, "value": a.patient_id}
