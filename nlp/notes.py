"""Getting note text out of DocumentReference / DiagnosticReport resources."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

ReadFn = Callable[[str, str], dict[str, Any]]


class NoteTextError(ValueError):
    """The resource has no readable plain-text content."""


def _decode(data: str) -> str:
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise NoteTextError(f"attachment data is not base64-encoded UTF-8 text: {exc}") from exc


def _from_attachment(att: dict[str, Any], read: ReadFn | None) -> str | None:
    ctype = (att.get("contentType") or "text/plain").split(";")[0].strip().lower()
    if not ctype.startswith("text/"):
        return None
    if att.get("data"):
        return _decode(att["data"])
    url = att.get("url") or ""
    if read is not None and url.startswith("Binary/"):
        binary = read("Binary", url.split("/", 1)[1])
        if binary.get("data"):
            return _decode(binary["data"])
    return None


def note_text(resource: dict[str, Any], read: ReadFn | None = None) -> str:
    """Concatenated text of all text/* attachments (DocumentReference.content, DiagnosticReport.presentedForm)."""
    rtype = resource.get("resourceType")
    if rtype == "DocumentReference":
        attachments = [c.get("attachment") or {} for c in resource.get("content") or []]
    elif rtype == "DiagnosticReport":
        attachments = list(resource.get("presentedForm") or [])
    else:
        raise NoteTextError(f"{rtype} does not carry a clinical note")
    texts = [t for t in (_from_attachment(a, read) for a in attachments) if t]
    if not texts:
        raise NoteTextError(f"{rtype}/{resource.get('id')} has no text/* attachment with inline data or a Binary url")
    return "\n\n".join(texts)


def patient_of(resource: dict[str, Any]) -> str | None:
    subject = resource.get("subject") or {}
    ref = subject.get("reference")
    return ref if isinstance(ref, str) and ref.startswith("Patient/") else None


def encounter_of(resource: dict[str, Any]) -> str | None:
    ctx = resource.get("context")
    if isinstance(ctx, dict):  # DocumentReference.context.encounter (R4: list)
        encs = ctx.get("encounter") or []
        if encs and isinstance(encs, list):
            ref = encs[0].get("reference")
            return ref if isinstance(ref, str) else None
    enc = resource.get("encounter") or {}
    ref = enc.get("reference") if isinstance(enc, dict) else None
    return ref if isinstance(ref, str) else None
