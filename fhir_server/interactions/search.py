"""search at type, system and compartment level (GET and POST _search), as a searchset Bundle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fhir_server import authz
from fhir_server.errors import OperationOutcomeError, bad_request
from fhir_server.interactions.common import check_id, check_type, prefer
from fhir_server.model import FhirRequest, FhirResponse, JsonDict
from fhir_server.repository import FhirRepository, StoredResource
from fhir_server.search.parser import ParsedSearch, compartment_criterion
from fhir_server.search.query import Criterion

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter


def search_params(req: FhirRequest) -> list[tuple[str, str]]:
    """URL parameters plus, for POST _search, the form-encoded body."""
    params = list(req.query)
    if req.method == "POST" and req.body:
        ctype = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype not in ("application/x-www-form-urlencoded", ""):
            raise OperationOutcomeError(415, "POST _search takes an application/x-www-form-urlencoded body",
                                        code="not-supported")
        try:
            params += parse_qsl(req.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise bad_request("The _search form body is not UTF-8") from exc
    return params


def shape(router: FhirRouter, parsed: ParsedSearch, res: JsonDict) -> JsonDict:
    if parsed.summary in ("true", "text", "data"):
        return router.apply_summary(res, parsed.summary)
    if parsed.elements:
        return router.apply_elements(res, parsed.elements)
    return res


def build_bundle(router: FhirRouter, req: FhirRequest, parsed: ParsedSearch, path: str,
                 matches: list[StoredResource], included: list[StoredResource], total: int | None,
                 next_cursor: str | None) -> JsonDict:
    base = req.context.base_url.rstrip("/")
    applied = [(k, v) for k, v in parsed.applied if k not in ("_cursor",)]
    self_link = f"{base}/{path}" + (f"?{urlencode(applied)}" if applied else "")
    links: list[JsonDict] = [{"relation": "self", "url": self_link}]
    if next_cursor:
        links.append({"relation": "next", "url": f"{base}/{path}?{urlencode(applied + [('_cursor', next_cursor)])}"})
    entries: list[JsonDict] = []
    for st, mode in [(m, "match") for m in matches] + [(i, "include") for i in included]:
        if st.resource is None:
            continue
        entries.append({"fullUrl": f"{base}/{st.resource_type}/{st.id}",
                        "resource": shape(router, parsed, st.resource), "search": {"mode": mode}})
    bundle: JsonDict = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    issues = [{"severity": "warning", "code": "not-supported", "diagnostics": f"Ignored search parameter {k}={v}"}
              for k, v in parsed.ignored]
    issues += [{"severity": "warning", "code": "not-found", "diagnostics": w} for w in parsed.warnings]
    if issues:
        entries.append({"resource": {"resourceType": "OperationOutcome", "issue": issues},
                        "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle


def run_search(router: FhirRouter, req: FhirRequest, repo: FhirRepository, types: list[str] | None,
               path: str, extra: list[Criterion] | None = None) -> FhirResponse:
    lenient = prefer(req, "handling") == "lenient"
    params = search_params(req)
    parsed = router.search_parser().parse(types, params, lenient=lenient)
    q = parsed.query
    if extra:
        q.criteria.extend(extra)
    authorize_search(router, req, q)
    result = repo.search(q)
    check_results(req, result.matches + result.included)
    if parsed.query.summary_count:
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": result.total or 0,
                                  "link": [{"relation": "self", "url": f"{req.context.base_url.rstrip('/')}/{path}"
                                            f"?{urlencode(parsed.applied)}"}]}
        return FhirResponse(200, bundle)
    return FhirResponse(200, build_bundle(router, req, parsed, path, result.matches, result.included,
                                          result.total, result.next_cursor))


def authorize_search(router: FhirRouter, req: FhirRequest, q: Any) -> None:
    """What every search-like interaction checks before it runs: the types searched and those a chain or
    ``_has`` reaches into, then the caller's restrictions ANDed into ``q`` (see ``restrict``)."""
    for rt in q.resource_types or []:
        authz.check_interaction(req.context, "search", rt)
    if q.resource_types is None:
        authz.check_interaction(req.context, "search", None)
    authz.check_search_targets(req.context, sorted(_reached_types(q.criteria)))
    restrict(router, req, q)


def check_results(req: FhirRequest, found: list[StoredResource]) -> None:
    """Each resource a search-like interaction returns, against the caller's grant (the last line)."""
    for st in found:
        if st.resource is not None:
            authz.check_resource(req.context, "search", st.resource)


def _reached_types(criteria: list[Criterion]) -> set[str]:
    """Types a chain or ``_has`` searches into: the caller must be allowed to search those too."""
    out: set[str] = set()
    stack = list(criteria)
    while stack:
        c = stack.pop()
        if c.kind in ("chain", "has") and c.target_type:
            out.add(c.target_type)
        stack.extend(c.subs)
        if c.sub is not None:
            stack.append(c.sub)
    return out


def restrict(router: FhirRouter, req: FhirRequest, q: Any) -> None:
    """AND the caller's scope restrictions (patient compartment, granular scopes) into the query, per type:
    with several types each type keeps its own restriction (OR across types), not the AND of all of them."""
    per_type: list[tuple[str, list[Criterion]]] = []
    for rt in q.resource_types or []:
        restrictions = authz.search_restrictions(req.context, rt)
        crits = router.search_parser().parse([rt], restrictions).query.criteria if restrictions else []
        per_type.append((rt, crits))
    if not any(crits for _, crits in per_type):
        return
    if len(per_type) == 1:
        q.criteria.extend(per_type[0][1])
        return
    q.criteria.append(Criterion("or", per_type[0][0], subs=[
        Criterion("and", rt, subs=[Criterion("type", rt, values=[rt]), *crits]) for rt, crits in per_type]))


def search_type(router: FhirRouter, req: FhirRequest, repo: FhirRepository, resource_type: str) -> FhirResponse:
    check_type(router, resource_type)
    return run_search(router, req, repo, [resource_type], resource_type)


def search_system(router: FhirRouter, req: FhirRequest, repo: FhirRepository) -> FhirResponse:
    types = None
    for k, v in search_params(req):
        if k == "_type":
            types = [t.strip() for t in v.split(",") if t.strip()]
    if types is None:
        real = [k for k, _ in search_params(req) if not k.startswith("_")]
        if real:
            raise bad_request("A system-level search with criteria needs _type")
    return run_search(router, req, repo, None, "")


def search_compartment(router: FhirRouter, req: FhirRequest, repo: FhirRepository, compartment: str, id: str,
                       resource_type: str) -> FhirResponse:
    check_type(router, compartment)
    check_id(id)
    types = sorted(router.registry.resource_types) if resource_type == "*" else [resource_type]
    if resource_type != "*":
        check_type(router, resource_type)
    crits = []
    for rt in types:
        c = compartment_criterion(router.registry, compartment, id, rt)
        if c is not None:
            crits.append(c)
    if not crits:
        raise bad_request(f"{resource_type} is not in the {compartment} compartment")
    crit = crits[0] if len(crits) == 1 else Criterion("or", types[0], subs=crits)
    return run_search(router, req, repo, [c.resource_type for c in crits], f"{compartment}/{id}/{resource_type}",
                      extra=[crit])
