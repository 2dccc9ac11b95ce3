"""Wiring the terminology service into the server: operations, store sync, first-start load.

The only module of this package that knows the FHIR core: it adapts
``FhirRequest`` to ``terminology.operations`` and maps ``TerminologyError`` to an
``OperationOutcomeError``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from fhir_server.errors import OperationOutcomeError
from fhir_server.interactions.common import request_resource
from fhir_server.model import FhirRequest, FhirResponse
from fhir_server.operations.parameters import parameters_of
from fhir_server.storage.engine import create_tables
from terminology import operations
from terminology.errors import TerminologyError
from terminology.service import TerminologyService

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
Handler = Callable[[Any, FhirRequest, str, str | None], FhirResponse]

# operation name -> (resource types, pure function taking (svc, params, resource_type, instance))
_OPS: dict[str, tuple[list[str], Callable[..., JsonDict]]] = {
    "lookup": (["CodeSystem"], lambda s, p, rt, inst: operations.lookup(s, p, inst)),
    "validate-code": (["CodeSystem", "ValueSet"],
                      lambda s, p, rt, inst: operations.validate_code(s, p, rt, inst)),
    "subsumes": (["CodeSystem"], lambda s, p, rt, inst: operations.subsumes(s, p, inst)),
    "expand": (["ValueSet"], lambda s, p, rt, inst: operations.expand(s, p, inst)),
    "translate": (["ConceptMap"], lambda s, p, rt, inst: operations.translate(s, p, inst)),
}


def _body(req: FhirRequest, name: str) -> JsonDict | None:
    """The Parameters body (JSON or XML), its shape checked: ``Params`` reads it without further checks."""
    if req.resource is None and not req.body:
        return None
    body = request_resource(req)
    parameters_of(body, f"${name}")
    return body


def make_handler(svc: TerminologyService, name: str, read: Callable[[str, str], JsonDict] | None = None,
                 ) -> Handler:
    """A router handler ``(router, req, resource_type, id) -> FhirResponse`` for one operation."""
    fn = _OPS[name][1]

    def handler(router: Any, req: FhirRequest, resource_type: str, id: str | None) -> FhirResponse:
        try:
            params = operations.Params(req.query, _body(req, name))
            instance = None
            if id is not None:
                instance = read(resource_type, id) if read is not None else _read_via_router(
                    router, req, resource_type, id)
                if resource_type in ("CodeSystem", "ConceptMap") and instance.get("url"):
                    _ensure_indexed(svc, instance)
            result = fn(svc, params, resource_type, instance)
        except TerminologyError as e:
            raise OperationOutcomeError(e.status, e.message, code=e.code) from e
        return FhirResponse(200, result)

    return handler


def _read_via_router(router: Any, req: FhirRequest, resource_type: str, id: str) -> JsonDict:
    resp = router.handle(FhirRequest("GET", f"{resource_type}/{id}", context=req.context))
    if resp.status >= 400 or resp.resource is None:
        raise OperationOutcomeError(resp.status if resp.status >= 400 else 404,
                                    f"{resource_type}/{id} not found", code="not-found")
    res: JsonDict = resp.resource
    return res


def _ensure_indexed(svc: TerminologyService, res: JsonDict) -> None:
    """An instance stored before the sync subscriber existed is indexed on first use."""
    if res["resourceType"] == "CodeSystem":
        if svc.index.code_system(res["url"], res.get("version")) is None:
            svc.load_resources([res], origin=f"CodeSystem/{res.get('id')}")
    elif res["resourceType"] == "ConceptMap":
        svc.load_resources([res], origin=f"ConceptMap/{res.get('id')}")


def _autoload(services: Any) -> bool:
    settings = getattr(services, "settings", None)
    extra = getattr(settings, "extra", None) or {}
    raw = extra.get("terminology_autoload", os.environ.get("DIGITALFRONT_TERMINOLOGY_AUTOLOAD", "1"))
    return str(raw).strip().lower() not in ("0", "off", "false", "no", "")


def init_app(app: Any, services: Any) -> None:
    """Create the service on the server's engine, register operations, sync the FHIR store."""
    svc = TerminologyService(services.engine, create_tables=create_tables)
    services.terminology = svc
    app.extensions["terminology"] = svc
    client = getattr(services, "client", None)
    read = client.read if client is not None and hasattr(client, "read") else None
    router = getattr(services, "router", None)
    if router is not None and getattr(router, "terminology", "absent") is None:
        router.terminology = svc  # the core looks here for bindings and :in/:below
    if router is not None and hasattr(router, "register_operation"):
        for name, (types, _fn) in _OPS.items():
            for level in ("type", "instance"):
                router.register_operation(name, make_handler(svc, name, read), level=level,
                                          resource_types=types)
    events = getattr(services, "events", None)
    if events is not None:
        for rt in ("CodeSystem", "ValueSet", "ConceptMap"):
            events.subscribe(lambda ev, svc=svc: sync_event(svc, ev), resource_type=rt)
    if _autoload(services):
        svc.ensure_core(background=True)


def sync_event(svc: TerminologyService, event: Any) -> None:
    """Keep the tables in step with CodeSystem/ValueSet/ConceptMap writes to the FHIR store."""
    origin = f"{event.resource_type}/{event.id}"
    svc.remove_origin(origin)
    res = event.resource
    if event.action != "delete" and isinstance(res, dict) and res.get("url"):
        svc.load_resources([res], origin=origin)
