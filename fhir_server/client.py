"""In-process FHIR client over the router, for the HL7v2, NLP, CDS and SMART packages."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import OperationOutcomeError
from fhir_server.model import SYSTEM_CONTEXT, FhirRequest, FhirResponse, JsonDict, RequestContext


class LocalFhirClient:
    """Calls the full REST API in-process (same validation, authorization and events)."""

    def __init__(self, router: Any, context: RequestContext = SYSTEM_CONTEXT) -> None:
        self.router = router
        self.context = context

    def with_context(self, context: RequestContext) -> LocalFhirClient:
        return LocalFhirClient(self.router, context)

    def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
                resource: JsonDict | None = None, headers: dict[str, str] | None = None) -> FhirResponse:
        req = FhirRequest(method, path, query or [], headers or {}, resource=resource, context=self.context)
        resp: FhirResponse = self.router.handle(req)
        if resp.status >= 400:
            outcome = resp.resource or {}
            from fhir_server.errors import Issue

            issues = [Issue(i.get("severity", "error"), i.get("code", "processing"), i.get("diagnostics", ""),
                            i.get("expression", [])) for i in outcome.get("issue", [])] or "request failed"
            raise OperationOutcomeError(resp.status, issues)
        return resp

    def read(self, resource_type: str, id: str) -> JsonDict:
        return self.request("GET", f"{resource_type}/{id}").resource or {}

    def search(self, resource_type: str, params: list[tuple[str, str]] | dict[str, str] | None = None,
               limit: int = 1000) -> list[JsonDict]:
        """All matching resources (search.mode=match), following next links up to ``limit``."""
        query = list(params.items()) if isinstance(params, dict) else list(params or [])
        out: list[JsonDict] = []
        cursor: str | None = None
        while len(out) < limit:
            q = query + ([("_cursor", cursor)] if cursor else [])
            bundle = self.request("GET", resource_type, q).resource or {}
            for e in bundle.get("entry", []):
                if e.get("search", {}).get("mode", "match") == "match" and "resource" in e:
                    out.append(e["resource"])
            nxt = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            if not nxt or "_cursor=" not in nxt:
                break
            from urllib.parse import parse_qs, urlsplit

            cursor = parse_qs(urlsplit(nxt).query)["_cursor"][0]
        return out[:limit]

    def search_bundle(self, resource_type: str, params: list[tuple[str, str]] | None = None) -> JsonDict:
        return self.request("GET", resource_type, params).resource or {}

    def create(self, resource: JsonDict, if_none_exist: str | None = None) -> JsonDict:
        headers = {"If-None-Exist": if_none_exist} if if_none_exist else None
        return self.request("POST", resource["resourceType"], resource=resource, headers=headers).resource or {}

    def update(self, resource: JsonDict) -> JsonDict:
        return self.request("PUT", f"{resource['resourceType']}/{resource['id']}", resource=resource).resource or {}

    def delete(self, resource_type: str, id: str) -> None:
        self.request("DELETE", f"{resource_type}/{id}")

    def transaction(self, bundle: JsonDict) -> JsonDict:
        return self.request("POST", "", resource={**bundle, "type": "transaction"}).resource or {}

    def batch(self, bundle: JsonDict) -> JsonDict:
        return self.request("POST", "", resource={**bundle, "type": "batch"}).resource or {}

    def operation(self, path: str, parameters: JsonDict | None = None, method: str = "POST",
                  query: list[tuple[str, str]] | None = None) -> JsonDict:
        return self.request(method, path, query, resource=parameters).resource or {}
