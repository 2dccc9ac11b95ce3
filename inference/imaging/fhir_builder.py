"""FHIR resources for an analysed study: ImagingStudy, Observations, DiagnosticReport, Provenance, Device.

Pure functions: they build one transaction Bundle so the whole result is
written atomically (nothing partial on failure).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inference.imaging.dicom import DicomInstance
from inference.model_device import model_device

DICOM_UID_SYSTEM = "urn:dicom:uid"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
PATIENT_ID_SYSTEM = "urn:digitalfront:dicom-patient-id"
FINDING_SYSTEM = "http://digitalfront.example/fhir/CodeSystem/ai-finding"
# DICOM BodyPartExamined defined terms -> SNOMED CT (the common ones; others keep the DICOM term as text)
BODY_PARTS = {"CHEST": ("51185008", "Thoracic structure"), "HEAD": ("69536005", "Head structure"),
              "BRAIN": ("12738006", "Brain structure"), "ABDOMEN": ("818983003", "Abdomen"),
              "PELVIS": ("816092008", "Pelvis"), "KNEE": ("72696002", "Knee region structure"),
              "SPINE": ("421060004", "Spinal structure"), "HAND": ("85562004", "Hand structure"),
              "BREAST": ("76752008", "Breast structure"), "LUNG": ("39607008", "Lung structure")}


@dataclass
class Finding:
    instance: DicomInstance
    probability: float  # max over frames
    frame_probabilities: list[float]
    positive: bool


@dataclass
class ModelRef:
    name: str
    version: str
    label: str  # the positive class, e.g. "nodule"
    demo: bool
    device_id: str | None = None  # existing Device resource id, if any


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def study_identifier(study_uid: str) -> dict[str, str]:
    return {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study_uid}"}


def _dicom_datetime(date: str | None, time: str | None) -> str | None:
    if not date or len(date) < 8 or not date[:8].isdigit():
        return None
    out = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
    if time and len(time) >= 4 and time[:4].isdigit():
        ss = time[4:6] if len(time) >= 6 and time[4:6].isdigit() else "00"
        out += f"T{time[:2]}:{time[2:4]}:{ss}Z"
    return out


def body_site(term: str | None) -> dict[str, str] | None:
    if not term:
        return None
    code = BODY_PARTS.get(term.upper())
    if code:
        return {"system": "http://snomed.info/sct", "code": code[0], "display": code[1]}
    return {"display": term}


def patient_resource(inst: DicomInstance) -> dict[str, Any]:
    """A minimal Patient from the DICOM header, keyed by PatientID."""
    res: dict[str, Any] = {"resourceType": "Patient",
                           "identifier": [{"system": PATIENT_ID_SYSTEM, "value": inst.patient_id}]}
    if inst.patient_name:
        family, _, given = inst.patient_name.partition("^")
        name: dict[str, Any] = {"family": family} if family else {}
        if given:
            name["given"] = [g for g in given.split("^") if g][:2]
        if name:
            res["name"] = [name]
    if inst.patient_sex in ("M", "F", "O"):
        res["gender"] = {"M": "male", "F": "female", "O": "other"}[inst.patient_sex]
    birth = _dicom_datetime(inst.patient_birth_date, None)
    if birth:
        res["birthDate"] = birth
    return res


def merge_imaging_study(existing: dict[str, Any] | None, instances: list[DicomInstance],
                        subject: dict[str, str]) -> dict[str, Any]:
    """Create or extend an ImagingStudy with the series/instances seen (idempotent per SOP UID)."""
    first = instances[0]
    study: dict[str, Any] = dict(existing) if existing else {
        "resourceType": "ImagingStudy", "status": "available", "identifier": [study_identifier(first.study_uid)]}
    study.setdefault("subject", subject)
    started = _dicom_datetime(first.study_date, first.study_time)
    if started and "started" not in study:
        study["started"] = started
    if first.study_description and "description" not in study:
        study["description"] = first.study_description
    series_by_uid = {s["uid"]: s for s in study.get("series", [])}
    for inst in instances:
        series = series_by_uid.get(inst.series_uid)
        if series is None:
            series = {"uid": inst.series_uid, "modality": {"system": DCM_SYSTEM, "code": inst.modality}}
            if inst.series_number is not None:
                series["number"] = inst.series_number
            if inst.series_description:
                series["description"] = inst.series_description
            site = body_site(inst.body_part)
            if site:
                series["bodySite"] = site
            series_by_uid[inst.series_uid] = series
        known = {i["uid"] for i in series.get("instance", [])}
        if inst.sop_uid not in known:
            sop_class = {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{inst.sop_class_uid}"}
            entry: dict[str, Any] = {"uid": inst.sop_uid, "sopClass": sop_class}
            if inst.instance_number is not None:
                entry["number"] = inst.instance_number
            series.setdefault("instance", []).append(entry)
        series["numberOfInstances"] = len(series.get("instance", []))
    study["series"] = list(series_by_uid.values())
    modalities = {s["modality"]["code"] for s in study["series"]}
    study["modality"] = [{"system": DCM_SYSTEM, "code": m} for m in sorted(modalities)]
    study["numberOfSeries"] = len(study["series"])
    study["numberOfInstances"] = sum(s.get("numberOfInstances", 0) for s in study["series"])
    return study


def device_resource(model: ModelRef) -> dict[str, Any]:
    return model_device(model.name, model.version, model.demo)


def observation(f: Finding, subject: dict[str, str], study_ref: str, device_ref: str,
                model: ModelRef, issued: str) -> dict[str, Any]:
    inst = f.instance
    obs: dict[str, Any] = {
        "resourceType": "Observation", "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "imaging", "display": "Imaging"}]}],
        "code": {"coding": [{"system": FINDING_SYSTEM, "code": model.label,
                             "display": f"{model.label} (AI probability)"}],
                 "text": f"AI probability of {model.label}"},
        "subject": subject, "effectiveDateTime": issued, "issued": issued,
        "valueQuantity": {"value": round(f.probability, 4), "unit": "probability",
                          "system": "http://unitsofmeasure.org", "code": "1"},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                        "code": "POS" if f.positive else "NEG"}]}],
        "method": {"text": f"{model.name} version {model.version}" + (" (demo model)" if model.demo else "")},
        "device": {"reference": device_ref},
        "derivedFrom": [{"reference": study_ref}],
        "note": [{"text": f"Series {inst.series_uid}, instance {inst.sop_uid}; "
                          f"maximum over {len(f.frame_probabilities)} frame(s)."}],
    }
    site = body_site(inst.body_part)
    if site:
        obs["bodySite"] = {"coding": [site]} if "code" in site else {"text": site["display"]}
    if len(f.frame_probabilities) > 1:
        obs["component"] = [{"code": {"text": f"frame {i + 1}"},
                             "valueQuantity": {"value": round(p, 4), "unit": "probability",
                                               "system": "http://unitsofmeasure.org", "code": "1"}}
                            for i, p in enumerate(f.frame_probabilities)]
    return obs


def build_transaction(*, study: dict[str, Any], study_full_url: str, study_request: dict[str, str],
                      findings: list[Finding], subject: dict[str, str], model: ModelRef,
                      patient: dict[str, Any] | None = None, patient_full_url: str | None = None,
                      analyze: bool = True) -> dict[str, Any]:
    """One transaction: [Patient], [Device], ImagingStudy, Observations, DiagnosticReport, Provenance."""
    issued = now_iso()
    entries: list[dict[str, Any]] = []
    if patient is not None and patient_full_url:
        entries.append({"fullUrl": patient_full_url, "resource": patient,
                        "request": {"method": "POST", "url": "Patient"}})
    entries.append({"fullUrl": study_full_url, "resource": study, "request": study_request})
    if not analyze:
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    if model.device_id:
        device_ref = f"Device/{model.device_id}"
    else:
        device_ref = urn()
        entries.append({"fullUrl": device_ref, "resource": device_resource(model),
                        "request": {"method": "POST", "url": "Device"}})
    obs_refs = []
    for f in findings:
        ref = urn()
        obs_refs.append(ref)
        entries.append({"fullUrl": ref, "resource": observation(f, subject, study_full_url, device_ref, model, issued),
                        "request": {"method": "POST", "url": "Observation"}})
    positives = [f for f in findings if f.positive]
    top = max((f.probability for f in findings), default=0.0)
    conclusion = (f"AI analysis ({model.name} v{model.version}{', demo model' if model.demo else ''}): "
                  f"{len(positives)} of {len(findings)} instance(s) positive for {model.label}; "
                  f"highest probability {top:.3f}.")
    report_ref = urn()
    report = {
        "resourceType": "DiagnosticReport", "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                                  "display": "Radiology"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "18748-4",
                             "display": "Diagnostic imaging study"}], "text": "AI imaging analysis"},
        "subject": subject, "effectiveDateTime": study.get("started", issued), "issued": issued,
        "imagingStudy": [{"reference": study_full_url}],
        "result": [{"reference": r} for r in obs_refs],
        "conclusion": conclusion,
    }
    entries.append({"fullUrl": report_ref, "resource": report,
                    "request": {"method": "POST", "url": "DiagnosticReport"}})
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": report_ref}] + [{"reference": r} for r in obs_refs],
        "recorded": issued,
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "CREATE"}]},
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "performer"}]},
                   "who": {"reference": device_ref, "display": f"{model.name} v{model.version}"}}],
        "entity": [{"role": "source", "what": {"reference": study_full_url}}],
    }
    entries.append({"fullUrl": urn(), "resource": provenance, "request": {"method": "POST", "url": "Provenance"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
