"""$extract: POST [base]/$extract (raw text) and POST [base]/DocumentReference/{id}/$extract.

Input is a Parameters resource (``text``, ``patient``, ``persist``, ``includeHypothetical``) or, for the
system-level call, a raw ``text/plain`` body; ``persist`` may also be a query parameter. Returns the
extracted Bundle (``collection``) or, with ``persist=true``, the transaction-response.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhir_server.client import LocalFhirClient
from fhir_server.errors import bad_request, not_found, unprocessable
from fhir_server.formats import parse_body
from fhir_server.model import SYSTEM_CONTEXT, FhirRequest, FhirResponse
from fhir_server.operations.parameters import complex_value, parameters_of
from nlp.notes import NoteTextError
from nlp.service import NlpService

MAX_TEXT_CHARS = 1_000_000


def _params(req: FhirRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    res = req.resource
    ctype = (req.headers.get("content-type") or "").lower()
    if res is None and req.body and not ctype.startswith("text/plain"):
        res = parse_body(req.body, ctype or None)  # over HTTP the body arrives unparsed; 400/415 if bad
    if res is not None:
        for p in parameters_of(res, "$extract"):
            name = p["name"]
            for key in ("valueString", "valueBoolean", "valueMarkdown"):
                if key in p:
                    out[name] = p[key]
            ref = complex_value(p, "Reference")
            if ref is not None:
                out[name] = ref.get("reference")
    elif req.body and ctype.startswith("text/plain"):
        try:
            out["text"] = req.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad_request("text/plain body must be UTF-8") from exc
    for name in ("persist", "includeHypothetical", "patient"):
        v = req.param(name)
        if v is not None:
            out[name] = v
    return out


def _flag(params: dict[str, Any], name: str) -> bool:
    v = params.get(name, False)
    if isinstance(v, bool):
        return v
    if str(v).lower() in ("true", "false"):
        return str(v).lower() == "true"
    raise bad_request(f"{name} must be true or false")


def make_handler(service: NlpService) -> Any:
    def extract(router: Any, req: FhirRequest, resource_type: str | None, id: str | None) -> FhirResponse:
        params = _params(req)
        persist = _flag(params, "persist")
        hypo = _flag(params, "includeHypothetical")
        # the note's attachments are read as the system (the note itself was read with the caller's rights);
        # the transaction-response's fullUrls and locations use the base the caller used
        client = LocalFhirClient(router, replace(SYSTEM_CONTEXT, base_url=req.context.base_url))
        btype = "transaction" if persist else "collection"
        if resource_type is None:
            text = params.get("text")
            if not isinstance(text, str) or not text.strip():
                raise bad_request("provide the note as parameter 'text' (or a text/plain body)")
            if len(text) > MAX_TEXT_CHARS:
                raise bad_request(f"text longer than {MAX_TEXT_CHARS} characters")
            patient = params.get("patient")
            if patient is not None and (not isinstance(patient, str) or not patient.startswith("Patient/")):
                raise bad_request("patient must be a reference 'Patient/<id>'")
            if persist and not patient:
                raise bad_request("persist=true needs a 'patient' reference")
            result = service.extract_text(text, patient, include_hypothetical=hypo, bundle_type=btype)
        else:
            try:
                note = LocalFhirClient(router, req.context).read(resource_type, id or "")
            except Exception as exc:  # OperationOutcomeError from read: re-raise as-is
                if hasattr(exc, "status"):
                    raise
                raise not_found(f"{resource_type}/{id} not found") from exc
            try:
                result = service.extract_note(note, client, include_hypothetical=hypo, bundle_type=btype)
            except NoteTextError as exc:
                raise unprocessable(str(exc)) from exc
            if persist and not result.patient_ref:
                raise unprocessable(f"{resource_type}/{id} has no Patient subject; cannot persist")
        if persist:  # written with the caller's own rights: each entry is a create (or delete) it must hold
            return FhirResponse(200, service.persist(result, LocalFhirClient(router, req.context)))
        return FhirResponse(200, result.bundle)

    return extract
