"""Minimal DICOMweb STOW-RS (PS3.18 10.5): multipart/related of application/dicom parts."""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import OperationOutcomeError, bad_request

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
FAILURE_CANNOT_UNDERSTAND = 0xC000  # PS3.4 "Cannot understand"
FAILURE_PROCESSING = 0x0110  # "Processing failure"


def split_multipart(content_type: str, body: bytes) -> list[bytes]:
    """Bodies of the parts (headers dropped); only application/dicom parts are accepted."""
    main = content_type.split(";")[0].strip().lower()
    if main == "application/dicom":
        return [body]
    if main != "multipart/related":
        raise OperationOutcomeError(415, f"STOW-RS takes multipart/related; type=\"application/dicom\", "
                                         f"not {main or 'no Content-Type'}", code="not-supported")
    m = _BOUNDARY.search(content_type)
    if not m:
        raise bad_request("multipart/related without a boundary")
    delim = b"--" + m.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise bad_request("malformed multipart part (no header/body separator)")
        headers = head.decode("latin-1").lower()
        ctype = re.search(r"content-type:\s*([^\r\n;]+)", headers)
        if ctype and ctype.group(1).strip() != "application/dicom":
            raise OperationOutcomeError(415, f"part type {ctype.group(1).strip()} is not supported "
                                             "(only application/dicom)", code="not-supported")
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    if not parts:
        raise bad_request("multipart body has no parts")
    return parts


def _attr(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


def stow_response(base: str, stored: list[tuple[str, str, str]], failed: list[tuple[str, str, int]]) -> dict[str, Any]:
    """DICOM JSON: stored = (study, sop class, sop instance); failed = (sop class, sop instance, reason)."""
    out: dict[str, Any] = {}
    studies = {s for s, _, _ in stored}
    if len(studies) == 1:
        out["00081190"] = _attr("UR", f"{base}/dicomweb/studies/{next(iter(studies))}")
    if stored:
        out["00081199"] = {"vr": "SQ", "Value": [
            {"00081150": _attr("UI", cls), "00081155": _attr("UI", sop),
             "00081190": _attr("UR", f"{base}/dicomweb/studies/{study}")} for study, cls, sop in stored]}
    if failed:
        out["00081198"] = {"vr": "SQ", "Value": [
            {**({"00081150": _attr("UI", cls)} if cls else {}), **({"00081155": _attr("UI", sop)} if sop else {}),
             "00081197": _attr("US", reason)} for cls, sop, reason in failed]}
    return out
