"""The FHIR REST router: ``FhirRequest`` in, ``FhirResponse`` out, no Flask.

It resolves the path to an interaction or operation, runs it against the
repository, and is the one place that maps ``OperationOutcomeError`` (and any
unexpected exception) to an OperationOutcome response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import Issue, OperationOutcomeError, bad_request, not_found, not_supported, operation_outcome
from fhir_server.interactions import bundle, create, delete, history, patch, read, search, update
from fhir_server.model import FhirRequest, FhirResponse, JsonDict
from fhir_server.repository import FhirRepository
from fhir_server.search.parser import SearchParser
from fhir_server.search.registry import SearchParamRegistry

log = logging.getLogger(__name__)

OperationHandler = Callable[["FhirRouter", FhirRequest, str | None, str | None], FhirResponse]


@dataclass
class RouterSettings:
    validate_writes: bool = True
    allow_multiple_delete: bool = False
    software_name: str = "DigitalFront"
    software_version: str = "0.1.0"


@dataclass
class Operation:
    name: str
    handler: OperationHandler
    levels: frozenset[str]
    resource_types: frozenset[str] | None
    methods: frozenset[str] = frozenset({"GET", "POST"})
    definition: str | None = None
    affects_state: bool = False


@dataclass
class FhirRouter:
    repo: FhirRepository
    registry: SearchParamRegistry
    settings: RouterSettings = field(default_factory=RouterSettings)
    terminology: Any = None
    capability_extras: list[Callable[[JsonDict], None]] = field(default_factory=list)
    operations: dict[str, list[Operation]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.resource_types = self.registry.resource_types
        self._parser: SearchParser | None = None
        from fhir_server.operations import register_core_operations

        register_core_operations(self)

    # ------------------------------------------------------------------ extension points
    def register_operation(self, name: str, handler: OperationHandler, level: str | tuple[str, ...] = "type",
                           resource_types: list[str] | None = None, methods: tuple[str, ...] = ("GET", "POST"),
                           definition: str | None = None, affects_state: bool = False) -> None:
        levels = frozenset([level] if isinstance(level, str) else level)
        op = Operation(name.lstrip("$"), handler, levels, frozenset(resource_types) if resource_types else None,
                       frozenset(m.upper() for m in methods), definition, affects_state)
        self.operations.setdefault(op.name, []).append(op)

    def search_parser(self) -> SearchParser:
        if self._parser is None or self._parser.terminology is not self.terminology:
            self._parser = SearchParser(self.registry, self.terminology)
        return self._parser

    # ------------------------------------------------------------------ hooks used by interactions
    def validate_write(self, resource: JsonDict, mode: str) -> None:
        if not self.settings.validate_writes:
            return
        try:
            from fhir_server.validation import validate_resource
        except ImportError:  # validation package not present
            return
        issues = validate_resource(resource, mode=mode, terminology=self.terminology)
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            raise OperationOutcomeError(400 if any(i.code in ("structure", "invalid", "value", "required")
                                                   for i in errors) else 422, errors)

    def apply_summary(self, resource: JsonDict, mode: str) -> JsonDict:
        from fhir_server.formats.summary import apply_summary

        return apply_summary(resource, mode)

    def apply_elements(self, resource: JsonDict, elements: list[str]) -> JsonDict:
        from fhir_server.formats.summary import apply_elements

        return apply_elements(resource, elements)

    def check_search_parameter(self, resource: JsonDict) -> None:
        """Refuse a custom SearchParameter the registry could not use."""
        for key in ("code", "base", "type"):
            if not resource.get(key):
                raise bad_request(f"SearchParameter.{key} is required")
        if resource["type"] not in ("number", "date", "string", "token", "reference", "composite", "quantity",
                                    "uri", "special"):
            raise bad_request(f"Unknown SearchParameter.type {resource['type']!r}")
        if resource["type"] != "special" and not resource.get("expression"):
            raise bad_request("SearchParameter.expression is required for a usable parameter")

    def on_search_parameter_written(self, resource: JsonDict) -> None:
        """A stored SearchParameter is registered; rows exist for it only after $reindex."""
        if resource.get("status", "active") in ("active", "draft") and resource.get("url"):
            self.registry.register(resource)

    def forget_search_parameter(self, id: str) -> None:
        return None  # registered parameters stay until restart; documented limitation

    def create_with_id(self, req: FhirRequest, repo: FhirRepository, id: str) -> FhirResponse:
        rt = req.path.split("/", 1)[0]
        return create.create(self, req, repo, rt, assigned_id=id)

    # ------------------------------------------------------------------ entry point
    def handle(self, req: FhirRequest) -> FhirResponse:
        try:
            resp = self.dispatch(req, self.repo)
        except OperationOutcomeError as err:
            resp = FhirResponse(err.status, err.outcome(), err.headers)
        except Exception as exc:  # noqa: BLE001 - last line of defence: never leak a stack trace
            known = self.repo.failure_outcome(exc)
            if known is not None:
                log.warning("%s %s: %s", req.method, req.path, exc)
                return FhirResponse(known.status, known.outcome(), known.headers)
            log.exception("unhandled error for %s %s", req.method, req.path)
            resp = FhirResponse(500, operation_outcome([Issue("fatal", "exception",
                                                              "Internal server error; it has been logged")]))
        return resp

    def dispatch(self, req: FhirRequest, repo: FhirRepository) -> FhirResponse:
        parts = [p for p in req.path.split("/") if p] if req.path else []
        m = req.method
        n = len(parts)
        if n == 0:
            if m == "POST":
                return bundle.handle_bundle(self, req, repo)
            if m in ("GET", "HEAD"):
                return search.search_system(self, req, repo)
            raise not_supported(f"{m} is not allowed on the base URL")
        head = parts[0]
        if head.startswith("$"):
            return self._operation(req, head[1:], "system", None, None)
        if n == 1:
            if head == "metadata" and m in ("GET", "HEAD"):
                from fhir_server.capabilities import capability_statement

                return FhirResponse(200, capability_statement(self, req))
            if head == "_history" and m in ("GET", "HEAD"):
                return history.history(self, req, repo, None, None)
            if head == "_search" and m == "POST":
                return search.search_system(self, req, repo)
            if m in ("GET", "HEAD"):
                return search.search_type(self, req, repo, head)
            if m == "POST":
                return create.create(self, req, repo, head)
            if m == "PUT":
                return update.conditional_update(self, req, repo, head)
            if m == "DELETE":
                return delete.conditional_delete(self, req, repo, head)
            if m == "PATCH":
                return patch.conditional_patch(self, req, repo, head)
            raise not_supported(f"{m} is not allowed on {head}")
        second = parts[1]
        if n == 2:
            if second == "_search" and m == "POST":
                return search.search_type(self, req, repo, head)
            if second == "_history" and m in ("GET", "HEAD"):
                return history.history(self, req, repo, head, None)
            if second.startswith("$"):
                return self._operation(req, second[1:], "type", head, None)
            if m in ("GET", "HEAD"):
                return read.read(self, req, repo, head, second)
            if m == "PUT":
                return update.update(self, req, repo, head, second)
            if m == "DELETE":
                return delete.delete(self, req, repo, head, second)
            if m == "PATCH":
                return patch.patch(self, req, repo, head, second)
            raise not_supported(f"{m} is not allowed on {head}/{second}")
        third = parts[2]
        if n == 3:
            if third == "_history" and m in ("GET", "HEAD"):
                return history.history(self, req, repo, head, second)
            if third.startswith("$"):
                return self._operation(req, third[1:], "instance", head, second)
            if m in ("GET", "HEAD"):
                return search.search_compartment(self, req, repo, head, second, third)
        if n == 4 and third == "_history" and m in ("GET", "HEAD"):
            return read.vread(self, req, repo, head, second, parts[3])
        if n == 4 and parts[3] == "_search" and m == "POST":
            return search.search_compartment(self, req, repo, head, second, third)
        raise not_found(f"No FHIR interaction at {m} /{req.path}")

    def _operation(self, req: FhirRequest, name: str, level: str, rt: str | None, id: str | None) -> FhirResponse:
        if rt is not None and rt not in self.resource_types:
            raise not_found(f"Unknown resource type {rt!r}")
        for op in self.operations.get(name, []):
            if level in op.levels and (op.resource_types is None or rt in op.resource_types):
                if req.method not in op.methods and not (req.method == "HEAD" and "GET" in op.methods):
                    raise not_supported(f"${name} does not accept {req.method}")
                return op.handler(self, req, rt, id)
        where = f"{rt}/{id}" if id else rt or "the system level"
        raise not_found(f"Operation ${name} is not supported on {where}")
