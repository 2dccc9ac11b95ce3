"""The one write path into the FHIR core: a transaction through the in-process router."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Issue, OperationOutcomeError
from fhir_server.model import SYSTEM_CONTEXT, FhirRequest


def router_transaction(router: Any) -> Any:
    """An ``apply_transaction(bundle) -> response bundle`` bound to ``router`` (system context)."""

    def apply(bundle: dict[str, Any]) -> dict[str, Any]:
        resp = router.handle(FhirRequest("POST", "", resource=bundle, context=SYSTEM_CONTEXT))
        if resp.status >= 400 or resp.resource is None:
            oo = resp.resource or {}
            issues = [
                Issue(
                    i.get("severity", "error"),
                    i.get("code", "processing"),
                    i.get("diagnostics", ""),
                    i.get("expression", []),
                )
                for i in oo.get("issue", [])
            ] or f"HTTP {resp.status}"
            raise OperationOutcomeError(resp.status, issues)
        result: dict[str, Any] = resp.resource
        return result

    return apply
