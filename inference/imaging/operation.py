"""``ImagingStudy/$analyze``: DICOM (raw, attachment, Binary or Media reference) -> findings as FHIR."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fhir_server.errors import OperationOutcomeError, bad_request
from fhir_server.model import FhirRequest, FhirResponse, Headers
from fhir_server.operations.parameters import complex_value, parameters_of
from inference.imaging.analyze import ImagingAnalyzer, StudyResult, raise_for_status

DICOM_TYPES = ("application/dicom", "application/octet-stream")


def _b64(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:  # TypeError: not a string at all
        raise bad_request(f"{where}: data is not valid base64") from exc


def _binary_bytes(router: Any, req: FhirRequest, reference: str) -> bytes:
    ref = reference.split("/_history")[0].strip("/")
    parts = ref.split("/")
    if len(parts) < 2 or parts[-2] not in ("Binary", "Media"):
        raise bad_request(f"reference {reference!r} must point to a Binary or Media")
    rtype, rid = parts[-2], parts[-1]
    resp = router.handle(FhirRequest("GET", f"{rtype}/{rid}", headers=Headers({"accept": "application/fhir+json"}),
                                     context=req.context))
    raise_for_status(resp)
    if resp.raw is not None and rtype == "Binary":
        return resp.raw
    res = resp.resource or {}
    if rtype == "Binary":
        if not res.get("data"):
            raise OperationOutcomeError(422, f"Binary/{rid} has no data")
        return _b64(res["data"], f"Binary/{rid}")
    content = res.get("content") or {}
    if content.get("data"):
        return _b64(content["data"], f"Media/{rid}.content")
    if content.get("url", "").count("Binary/"):
        return _binary_bytes(router, req, content["url"])
    raise OperationOutcomeError(422, f"Media/{rid} has neither inline data nor a Binary url")


def parse_request(router: Any, req: FhirRequest) -> tuple[list[bytes], dict[str, str]]:
    """The DICOM blobs and options (subject, model, version) from a $analyze call."""
    ctype = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if req.method == "POST" and ctype in DICOM_TYPES:
        return [req.body or b""], {k: v for k, v in req.query if k in ("subject", "model", "version")}
    params = req.resource
    if params is None and req.body:
        try:
            params = json.loads(req.body)
        except ValueError as exc:
            raise bad_request("body is neither DICOM nor a JSON Parameters resource") from exc
    if req.method == "GET" or params is None:
        raise bad_request("POST a DICOM file (Content-Type: application/dicom) or a Parameters resource "
                          "with 'dicom' (valueAttachment), 'binary' or 'media' (valueReference)")
    blobs: list[bytes] = []
    opts: dict[str, str] = {}
    for p in parameters_of(params, "$analyze"):
        name = p["name"]
        if name == "dicom":
            att = complex_value(p, "Attachment") or {}
            if att.get("data"):
                blobs.append(_b64(att["data"], "parameter dicom"))
            elif isinstance(att.get("url"), str) and att["url"]:
                blobs.append(_binary_bytes(router, req, att["url"]))
            else:
                raise bad_request("parameter dicom: valueAttachment needs data or url")
        elif name in ("binary", "media"):
            ref = (complex_value(p, "Reference") or {}).get("reference")
            if not ref or not isinstance(ref, str):
                raise bad_request(f"parameter {name}: valueReference.reference is required")
            blobs.append(_binary_bytes(router, req, ref))
        elif name == "subject":
            ref = (complex_value(p, "Reference") or {}).get("reference")
            if not ref or not isinstance(ref, str):
                raise bad_request("parameter subject: valueReference.reference is required")
            opts["subject"] = ref
        elif name in ("model", "version"):
            opts[name] = str(p.get("valueString") or p.get("valueCode") or "")
    if not blobs:
        raise bad_request("no DICOM given: use parameter 'dicom', 'binary' or 'media'")
    return blobs, opts


def result_parameters(results: list[StudyResult]) -> dict[str, Any]:
    params: list[dict[str, Any]] = []

    def ref(name: str, value: str | None) -> None:
        if value:
            params.append({"name": name, "valueReference": {"reference": value}})

    for r in results:
        ref("imagingStudy", r.imaging_study)
        ref("report", r.report)
        for o in r.observations:
            ref("observation", o)
        ref("provenance", r.provenance)
        ref("device", r.device)
        for f in r.findings:
            params.append({"name": "finding", "part": [
                {"name": "sopInstanceUid", "valueString": f.instance.sop_uid},
                {"name": "probability", "valueDecimal": round(f.probability, 4)},
                {"name": "positive", "valueBoolean": f.positive},
                {"name": "frames", "valueInteger": len(f.frame_probabilities)},
            ]})
    return {"resourceType": "Parameters", "parameter": params}


def make_handler(analyzer: ImagingAnalyzer) -> Any:
    def analyze(router: Any, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
        blobs, opts = parse_request(router, req)
        subject = opts.get("subject")
        results = analyzer.analyze(router, blobs, context=req.context, subject=subject,
                                   model=opts.get("model") or None, version=opts.get("version") or None)
        return FhirResponse(200, result_parameters(results))

    return analyze
