"""TXA + OBX -> DocumentReference with the note text (IG TXA/OBX[DocumentReference]).

The text is the OBX TX/FT/ST values joined by newlines (escape sequences and
``\\.br\\`` resolved), attached as text/plain; the NLP service reads it from
there.  OBX ED values become further attachments.
"""

from __future__ import annotations

import base64
from typing import Any

from interfaces.er7 import Segment
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.codes import id_system
from interfaces.mapping.datatypes import cwe, ei, field_dtm
from interfaces.mapping.segments.pv1 import practitioner_ref

JsonDict = dict[str, Any]
DOC_STATUS = {
    "AU": "final",
    "LA": "final",
    "PN": "preliminary",
    "IP": "preliminary",
    "IN": "preliminary",
    "DI": "preliminary",
    "DO": "preliminary",
    "AV": "final",
    "CA": "entered-in-error",
}


def note_text(obxs: list[Segment]) -> str:
    lines = [f.text for obx in obxs if obx.get(2).upper() in ("TX", "FT", "ST", "CF", "") for f in obx.fields_of(5)]
    return "\n".join(line.replace("\\.br\\", "\n") for line in lines)


def map_txa(
    txa: Segment | None,
    obxs: list[Segment],
    b: BundleBuilder,
    patient_ref: str,
    encounter_ref: str | None,
    fallback_id: JsonDict | None,
) -> str:
    doc: JsonDict = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": patient_ref},
    }
    key = ei(txa.field_value(12)) if txa is not None and txa.field_value(12) else None
    if key is None:
        key = fallback_id
    if key is not None:
        key.setdefault("system", id_system(b.header.sending_facility or "documents"))
        doc["identifier"] = [key]
        doc["masterIdentifier"] = dict(key)
    if txa is not None:
        dtype = cwe(txa.field_value(2), table="HL70270")
        if dtype:
            doc["type"] = dtype
        if txa.get(17) in DOC_STATUS:
            doc["docStatus"] = DOC_STATUS[txa.get(17)]
        when = field_dtm(txa, 6, instant=True) or field_dtm(txa, 4, instant=True)  # DocumentReference.date: an instant
        if when:
            doc["date"] = when
        authors = [r for r in (practitioner_ref(f, b) for f in txa.fields_of(9) + txa.fields_of(5)) if r]
        if authors:
            doc["author"] = authors
        if txa.get(25):  # document title (v2.6+, sent in 2.5.1 feeds too)
            doc["description"] = txa.get(25)
        if txa.get(16):  # unique document file name
            doc.setdefault("identifier", []).append(
                {"type": {"text": "Document unique file name"}, "value": txa.get(16)}
            )
    text = note_text(obxs)
    content: list[JsonDict] = []
    if text:
        content.append(
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "language": "en",
                    "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                    "title": doc.get("description", "note"),
                }
            }
        )
    for obx in obxs:
        if obx.get(2).upper() == "ED":
            f = obx.field_value(5)
            if f is None:
                continue
            raw = f.c(5)
            if not raw.strip():  # an ED with no data: nothing to attach (FHIR has no empty base64Binary)
                continue
            mime = "/".join(p for p in (f.c(2), f.c(3)) if p).lower() or "application/octet-stream"
            if f.c(4).upper() == "BASE64":
                try:
                    base64.b64decode(raw, validate=True)
                    content.append({"attachment": {"contentType": _mime(mime), "data": raw}})
                except ValueError:
                    content.append({"attachment": {"contentType": _mime(mime), "title": raw[:100]}})
    doc["content"] = content or [{"attachment": {"contentType": "text/plain", "title": "empty document"}}]
    if encounter_ref:
        doc["context"] = {"encounter": [{"reference": encounter_ref}]}
    return b.add(doc, key=key)


def _mime(v2: str) -> str:
    known = {
        "ap/pdf": "application/pdf",
        "application/pdf": "application/pdf",
        "image/jpeg": "image/jpeg",
        "text/html": "text/html",
        "text/rtf": "text/rtf",
    }
    return known.get(v2, v2 if "/" in v2 else "application/octet-stream")
