"""The imaging service: DICOM bytes -> model -> one FHIR transaction.

Used by ``ImagingStudy/$analyze`` and DICOMweb STOW-RS. Everything that can
fail on input (parsing, decoding, inference) happens before the single
transaction, so a bad file writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fhir_server.errors import Issue, OperationOutcomeError
from fhir_server.model import SYSTEM_CONTEXT, FhirRequest, RequestContext
from inference.client import InferenceError, ModelClient
from inference.imaging import fhir_builder as fb
from inference.imaging.dicom import DicomError, DicomInstance, preprocess, read_dicom
from inference.model_device import MODEL_ID_SYSTEM
from inference.registry import ModelRegistry

log = logging.getLogger(__name__)
DEFAULT_MODEL = "imaging_cnn"


@dataclass
class StudyResult:
    study_uid: str
    imaging_study: str | None = None  # "ImagingStudy/<id>"
    report: str | None = None
    observations: list[str] = field(default_factory=list)
    provenance: str | None = None
    device: str | None = None
    findings: list[fb.Finding] = field(default_factory=list)


def _call(router: Any, req: FhirRequest) -> dict[str, Any]:
    return raise_for_status(router.handle(req))


def raise_for_status(resp: Any) -> dict[str, Any]:
    """A router response's resource, or its OperationOutcome raised with the same status."""
    if resp.status >= 400:
        res = resp.resource or {}
        issues = [Issue(i.get("severity", "error"), i.get("code", "processing"), i.get("diagnostics", ""))
                  for i in res.get("issue", [])] or [Issue("error", "processing", f"HTTP {resp.status}")]
        raise OperationOutcomeError(resp.status, issues)
    return resp.resource or {}


def _search_one(router: Any, ctx: RequestContext, rtype: str, params: list[tuple[str, str]]) -> dict[str, Any] | None:
    bundle = _call(router, FhirRequest("GET", rtype, query=params, context=ctx))
    for entry in bundle.get("entry", []):
        res = entry.get("resource") or {}
        if res.get("resourceType") == rtype and entry.get("search", {}).get("mode", "match") == "match":
            return res
    return None


def dicom_error(exc: DicomError) -> OperationOutcomeError:
    code = "structure" if exc.status == 400 else "not-supported"
    return OperationOutcomeError(exc.status, [Issue("error", code, str(exc))])


class ImagingAnalyzer:
    def __init__(self, client: ModelClient, model_registry: ModelRegistry, model: str = DEFAULT_MODEL,
                 threshold: float = 0.5) -> None:
        self.client = client
        self.registry = model_registry
        self.model = model
        self.threshold = threshold

    # -- inference ------------------------------------------------------------------
    def infer(self, instances: list[DicomInstance], model: str | None = None,
              version: str | None = None) -> tuple[fb.ModelRef, list[fb.Finding]]:
        name = model or self.model
        try:
            info = self.registry.get(name)
            v = str(info.resolve_version(version))
        except LookupError as exc:
            raise OperationOutcomeError(400, [Issue("error", "not-found", str(exc))]) from None
        spec = info.config.inputs[0]
        size = spec.dims[-1]
        labels = (info.config.parameters.get("labels") or "negative,positive").split(",")
        positive = info.config.parameters.get("positive_label") or labels[-1]
        pos_index = labels.index(positive) if positive in labels else len(labels) - 1
        out_name = info.config.outputs[0].name
        batch = max(1, info.config.max_batch_size)
        findings = []
        for inst in instances:
            try:
                x = preprocess(inst, size=size)
            except DicomError as exc:
                raise dicom_error(exc) from exc
            probs: list[float] = []
            for i in range(0, len(x), batch):
                try:
                    out = self.client.infer(name, {spec.name: x[i:i + batch]}, version=v, outputs=[out_name])
                except InferenceError as exc:
                    raise OperationOutcomeError(exc.status if exc.status < 500 else 503,
                                                [Issue("error", "exception", f"inference failed: {exc}")]) from exc
                probs.extend(float(p) for p in np.asarray(out[out_name])[:, pos_index])
            top = max(probs)
            findings.append(fb.Finding(inst, top, probs, top >= self.threshold))
        ref = fb.ModelRef(name=name, version=v, label=positive, demo=bool(info.card.get("demo_model", False)))
        return ref, findings

    # -- the whole pipeline ---------------------------------------------------------------
    def parse(self, blobs: list[bytes]) -> list[DicomInstance]:
        out = []
        for i, blob in enumerate(blobs):
            try:
                out.append(read_dicom(blob))
            except DicomError as exc:
                raise OperationOutcomeError(exc.status, [Issue("error", "structure" if exc.status == 400
                                                               else "not-supported",
                                                               f"part {i + 1}: {exc}")]) from exc
        return out

    def analyze(self, router: Any, blobs: list[bytes], *, context: RequestContext = SYSTEM_CONTEXT,
                subject: str | None = None, model: str | None = None, version: str | None = None,
                run_model: bool = True) -> list[StudyResult]:
        instances = self.parse(blobs)
        by_study: dict[str, list[DicomInstance]] = {}
        for inst in instances:
            by_study.setdefault(inst.study_uid, []).append(inst)
        findings_by_sop: dict[str, fb.Finding] = {}
        model_ref: fb.ModelRef | None = None
        if run_model:
            model_ref, findings = self.infer(instances, model, version)
            findings_by_sop = {f.instance.sop_uid: f for f in findings}
            device = _search_one(router, context, "Device",
                                 [("identifier", f"{MODEL_ID_SYSTEM}|{model_ref.name}:{model_ref.version}")])
            model_ref.device_id = device.get("id") if device else None
        results = []
        for study_uid, group in by_study.items():
            ident = fb.study_identifier(study_uid)
            existing = _search_one(router, context, "ImagingStudy",
                                   [("identifier", f"{ident['system']}|{ident['value']}")])
            patient = patient_url = None
            if subject:
                subj = {"reference": subject}
            elif existing and existing.get("subject"):
                subj = existing["subject"]
            elif group[0].patient_id:
                found = _search_one(router, context, "Patient",
                                    [("identifier", f"{fb.PATIENT_ID_SYSTEM}|{group[0].patient_id}")])
                if found:
                    subj = {"reference": f"Patient/{found['id']}"}
                else:
                    patient, patient_url = fb.patient_resource(group[0]), fb.urn()
                    subj = {"reference": patient_url}
            else:
                raise OperationOutcomeError(422, [Issue("error", "required",
                                                        "no subject: pass 'subject' or send DICOM with PatientID")])
            study = fb.merge_imaging_study(existing, group, subj)
            if existing:
                full_url = f"ImagingStudy/{existing['id']}"
                request = {"method": "PUT", "url": full_url}
            else:
                full_url, request = fb.urn(), {"method": "POST", "url": "ImagingStudy"}
            group_findings = [findings_by_sop[i.sop_uid] for i in group if i.sop_uid in findings_by_sop]
            bundle = fb.build_transaction(
                study=study, study_full_url=full_url, study_request=request, findings=group_findings,
                subject=subj, model=model_ref or fb.ModelRef(self.model, "", "", False),
                patient=patient, patient_full_url=patient_url, analyze=run_model)
            response = _call(router, FhirRequest("POST", "", resource=bundle, context=context))
            results.append(_summarise(study_uid, bundle, response, group_findings))
        return results


def _summarise(study_uid: str, bundle: dict[str, Any], response: dict[str, Any],
               findings: list[fb.Finding]) -> StudyResult:
    out = StudyResult(study_uid=study_uid, findings=findings)
    for sent, got in zip(bundle["entry"], response.get("entry", []), strict=False):
        loc = (got.get("response") or {}).get("location") or ""
        rtype = sent["resource"]["resourceType"]
        ref = "/".join(loc.split("/_history")[0].split("/")[-2:]) if loc else None
        if ref is None and got.get("resource", {}).get("id"):
            ref = f"{rtype}/{got['resource']['id']}"
        if rtype == "ImagingStudy":
            out.imaging_study = ref
        elif rtype == "DiagnosticReport":
            out.report = ref
        elif rtype == "Observation" and ref:
            out.observations.append(ref)
        elif rtype == "Provenance":
            out.provenance = ref
        elif rtype == "Device":
            out.device = ref
    return out
