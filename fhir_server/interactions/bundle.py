"""batch and transaction Bundles.

Transactions: every entry runs in one database transaction (all or nothing),
in the spec's order (DELETE, POST, PUT/PATCH, GET/HEAD); ``urn:uuid:`` and
other ``fullUrl`` placeholders are resolved everywhere in the bundle, including
narrative links, and conditional references (``Patient?identifier=...``) are
resolved by search. Batches run each entry on its own and report each outcome.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from fhir_server import authz
from fhir_server.errors import Issue, OperationOutcomeError, bad_request, operation_outcome
from fhir_server.ids import new_id as make_id
from fhir_server.interactions.common import if_none_exist_query, match_conditional, multiple_matches, write_criteria
from fhir_server.interactions.prepared import (
    CONDITIONAL_REF,
    PreparedBundle,
    conditional_references,
    fixed_index,
    resolved_entry,
    trusted_validation,
)
from fhir_server.model import FhirRequest, FhirResponse, Headers, JsonDict
from fhir_server.repository import ConditionalCriteria, FhirRepository, StoredResource

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter

_PLAIN_PATH = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified",
               400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found",
               405: "405 Method Not Allowed", 409: "409 Conflict", 410: "410 Gone", 412: "412 Precondition Failed",
               415: "415 Unsupported Media Type", 422: "422 Unprocessable Entity", 500: "500 Internal Server Error"}


def handle_bundle(router: FhirRouter, req: FhirRequest, repo: FhirRepository) -> FhirResponse:
    from fhir_server.interactions.common import request_resource

    bundle = request_resource(req)
    if bundle.get("resourceType") != "Bundle":
        raise bad_request("POST to the base needs a Bundle of type batch or transaction")
    kind = bundle.get("type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise bad_request("Bundle.entry must be an array")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("request"), dict):
            raise bad_request(f"Bundle.entry[{i}] has no request", expression=[f"Bundle.entry[{i}]"])
        method = str(e["request"].get("method", "")).upper()
        if method not in ORDER or not isinstance(e["request"].get("url"), str):
            raise bad_request(f"Bundle.entry[{i}].request needs a method and url",
                              expression=[f"Bundle.entry[{i}].request"])
        _check_entry_shape(e, i)
    if kind == "transaction":
        return FhirResponse(200, _transaction(router, req, repo, entries))
    if kind == "batch":
        return FhirResponse(200, _batch(router, req, repo, entries))
    raise bad_request(f"Bundle.type must be batch or transaction, not {kind!r}")


_REQUEST_STRINGS = ("ifMatch", "ifNoneMatch", "ifNoneExist", "ifModifiedSince")


def _check_entry_shape(e: JsonDict, i: int) -> None:
    """What the transaction's bookkeeping reads before any entry is validated: the JSON types it relies on."""
    where = f"Bundle.entry[{i}]"
    if "fullUrl" in e and not isinstance(e["fullUrl"], str):
        raise bad_request(f"{where}.fullUrl must be a string", code="structure", expression=[f"{where}.fullUrl"])
    res = e.get("resource")
    if res is not None and (not isinstance(res, dict) or not isinstance(res.get("resourceType"), str)):
        raise bad_request(f"{where}.resource must be a resource (an object with a resourceType)", code="structure",
                          expression=[f"{where}.resource"])
    for name in _REQUEST_STRINGS:
        if e["request"].get(name) is not None and not isinstance(e["request"][name], str):
            raise bad_request(f"{where}.request.{name} must be a string", code="structure",
                              expression=[f"{where}.request.{name}"])


def _entry_request(req: FhirRequest, entry: JsonDict) -> FhirRequest:
    r = entry["request"]
    url = r["url"]
    base = req.context.base_url.rstrip("/")
    if url.startswith(base + "/"):
        url = url[len(base) + 1:]
    if _PLAIN_PATH.fullmatch(url):  # "Type" or "Type/id" (most entries): nothing to split
        path, query = url, []
    else:
        parts = urlsplit(url)
        path, query = parts.path, parse_qsl(parts.query, keep_blank_values=True)
    headers = Headers()
    for field, header in (("ifMatch", "If-Match"), ("ifNoneMatch", "If-None-Match"),
                          ("ifNoneExist", "If-None-Exist"), ("ifModifiedSince", "If-Modified-Since")):
        if r.get(field):
            headers[header] = str(r[field])
    if req.headers.get("prefer"):
        headers["Prefer"] = req.headers["prefer"]
    resource = entry.get("resource")
    return FhirRequest(r["method"], path, query, headers,
                       resource=resource if isinstance(resource, dict) else None, context=req.context)


def _response_entry(resp: FhirResponse, full_url: str | None = None) -> JsonDict:
    out: JsonDict = {"status": STATUS_TEXT.get(resp.status, str(resp.status))}
    if resp.headers.get("location"):
        out["location"] = resp.headers["location"]
    if resp.headers.get("etag"):
        out["etag"] = resp.headers["etag"]
    if resp.headers.get("last-modified"):
        res = resp.resource
        stamped = (res.get("meta") or {}).get("lastUpdated") if res else None
        if isinstance(stamped, str) and res and res.get("resourceType") != "OperationOutcome":
            out["lastModified"] = stamped  # the resource's exact instant (the HTTP date has whole seconds)
        else:
            from email.utils import parsedate_to_datetime

            out["lastModified"] = parsedate_to_datetime(resp.headers["last-modified"]).isoformat().replace(
                "+00:00", "Z")
    entry: JsonDict = {}
    if full_url:
        entry["fullUrl"] = full_url
    if resp.resource is not None:
        if resp.resource.get("resourceType") == "OperationOutcome":
            out["outcome"] = resp.resource
        else:
            entry["resource"] = resp.resource
    entry["response"] = out
    return entry


def _batch(router: FhirRouter, req: FhirRequest, repo: FhirRepository, entries: list[JsonDict]) -> JsonDict:
    out = []
    for entry in entries:
        sub = _entry_request(req, entry)
        try:
            resp = router.dispatch(sub, repo)
        except OperationOutcomeError as err:
            resp = FhirResponse(err.status, err.outcome())
        out.append(_response_entry(resp))
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}


def _transaction(router: FhirRouter, req: FhirRequest, repo: FhirRepository, entries: list[JsonDict]) -> JsonDict:
    order = sorted(range(len(entries)), key=lambda i: ORDER[entries[i]["request"]["method"].upper()])
    results: dict[int, JsonDict] = {}
    try:
        with repo.unit_of_work() as uow:
            mapping: dict[str, str] = {}
            assigned: dict[int, str] = {}
            matched: dict[int, StoredResource] = {}  # conditional PUTs resolved here: not searched again
            uow.lock_criteria(_conditional_writes(entries))  # all at once, in one order (see match_for_write)
            # 1. placeholders: POSTs get their ids now; conditional creates/updates resolve by search
            for i, e in enumerate(entries):
                method = e["request"]["method"].upper()
                full = e.get("fullUrl")
                res = e.get("resource") if isinstance(e.get("resource"), dict) else None
                url = e["request"]["url"]
                if method == "POST" and res is not None:
                    if e["request"].get("ifNoneExist"):
                        found = match_conditional(router, uow, res["resourceType"],
                                                  if_none_exist_query(str(e["request"]["ifNoneExist"])))
                        if len(found) > 1:
                            raise multiple_matches(f"entry {i} ifNoneExist")
                        if found:
                            if full:
                                mapping[full] = f"{found[0].resource_type}/{found[0].id}"
                            continue
                    new_id = make_id()
                    assigned[i] = new_id
                    if full:
                        mapping[full] = f"{res['resourceType']}/{new_id}"
                elif method == "PUT" and res is not None and full:
                    if "?" in url:
                        rtype, query = url.split("?", 1)
                        found = match_conditional(router, uow, rtype, query)
                        if len(found) == 1:
                            mapping[full] = f"{rtype}/{found[0].id}"
                            matched[i] = found[0]
                        elif not found and res.get("id"):
                            mapping[full] = f"{rtype}/{res['id']}"
                        elif not found:
                            new_id = make_id()
                            assigned[i] = new_id
                            mapping[full] = f"{rtype}/{new_id}"
                    else:
                        mapping[full] = url.split("/_history")[0]
            # 2. conditional references anywhere in the bundle (found ahead, when it was prepared)
            prepared = _usable(router, req.prepared, entries)
            cond: set[str] = set()
            if prepared is not None and prepared.conditional_references is not None:
                cond.update(prepared.conditional_references)
            else:
                cond.update(conditional_references([e.get("resource") for e in entries]))
            for ref in cond:
                m = CONDITIONAL_REF.match(ref)
                assert m
                found = match_conditional(router, uow, m.group(1), m.group(2))
                if len(found) != 1:
                    raise OperationOutcomeError(412, [Issue("error", "not-found" if not found else "multiple-matches",
                                                            f"Conditional reference {ref} matched {len(found)} "
                                                            "resources; it must match exactly one")])
                mapping[ref] = f"{m.group(1)}/{found[0].id}"
            # 3. run the entries in the spec's order (current rows of updated resources read in one query)
            prefetch = getattr(uow, "prefetch_current", None)
            if prefetch is not None:
                keys = []
                for i in order:
                    r = entries[i]["request"]
                    url = str(mapping.get(r["url"], r["url"])).split("?")[0].split("/_history")[0]
                    parts = url.split("/")
                    if i in matched:
                        keys.append((matched[i].resource_type, matched[i].id))
                    elif i in assigned and r["method"].upper() == "PUT":  # a new id: the read finds nothing
                        keys.append((entries[i]["resource"]["resourceType"], assigned[i]))
                    elif r["method"].upper() in ("PUT", "DELETE") and len(parts) == 2 and i not in assigned:
                        keys.append((parts[0], parts[1]))
                prefetch(keys)
            offer = getattr(uow, "offer_index", None) if prepared is not None else None
            for i in order:
                ahead = prepared.entries[i] if prepared is not None else None
                e = resolved_entry(entries[i], mapping, ahead) if mapping else entries[i]
                sub = _entry_request(req, e)
                target = None
                if i in assigned:
                    target = (e["resource"]["resourceType"], assigned[i])
                    if sub.method == "PUT":  # conditional PUT that matched nothing: create with the placeholder's id
                        sub = FhirRequest("PUT", "/".join(target), [], sub.headers,
                                          resource={**e["resource"], "id": assigned[i]}, context=sub.context)
                elif i in matched:  # conditional PUT matched in step 1: update that resource
                    hit = matched[i]
                    body = e["resource"]
                    if "id" in body and body["id"] != hit.id:
                        raise bad_request(f"Body id {body['id']!r} differs from the matched resource {hit.id!r}")
                    authz.check_resource(sub.context, "update", hit.resource or {})
                    target = (hit.resource_type, hit.id)
                    sub = FhirRequest("PUT", "/".join(target), [], sub.headers, resource={**body, "id": hit.id},
                                      context=sub.context)
                elif sub.method == "PUT" and sub.resource is not None and sub.path.count("/") == 1:
                    target = (sub.path.split("/")[0], sub.path.split("/")[1])
                offered = None
                if prepared is not None:
                    sub.prevalidated = trusted_validation(ahead, router.terminology)
                    if offer is not None and target is not None:
                        offered = target
                        offer(*target, fixed_index(ahead, mapping))
                try:
                    if i in assigned and sub.method == "POST":
                        resp = router.create_with_id(sub, uow, assigned[i])
                    else:
                        resp = router.dispatch(sub, uow)
                finally:  # rows offered for a write that did not happen must not serve a later one
                    if offer is not None and offered is not None:
                        offer(*offered, None)
                if resp.status >= 400:
                    raise OperationOutcomeError(resp.status, [Issue("error", "processing",
                                                                    f"Entry {i} failed with {resp.status}")])
                full_url = None
                res = resp.get_resource()
                if res is not None and res.get("id") and res.get("resourceType"):
                    full_url = f"{req.context.base_url.rstrip('/')}/{res['resourceType']}/{res['id']}"
                results[i] = _response_entry(resp, full_url)
    except OperationOutcomeError as err:
        failed = [i for i in order if i not in results]
        where = failed[0] if failed else None
        issues = [Issue(x.severity, x.code, (f"Bundle.entry[{where}]: " if where is not None else "") + x.diagnostics,
                        x.expression) for x in err.issues]
        raise OperationOutcomeError(err.status, issues) from err
    return {"resourceType": "Bundle", "type": "transaction-response",
            "entry": [results[i] for i in range(len(entries))]}


def _conditional_writes(entries: list[JsonDict]) -> list[ConditionalCriteria]:
    """The criteria of the transaction's conditional creates and updates (malformed ones are refused later)."""
    found: list[ConditionalCriteria] = []
    for e in entries:
        req, res = e["request"], e.get("resource")
        method, url = str(req["method"]).upper(), str(req["url"])
        try:
            if method == "POST" and isinstance(res, dict) and req.get("ifNoneExist"):
                found.append(write_criteria(str(res.get("resourceType")), if_none_exist_query(str(req["ifNoneExist"]))))
            elif method == "PUT" and "?" in url:
                found.append(write_criteria(*url.split("?", 1)))
        except OperationOutcomeError:
            continue
    return found


def _usable(router: FhirRouter, prepared: Any, entries: list[JsonDict]) -> PreparedBundle | None:
    """The request's prepared work, if it was done for these entries with today's search parameters."""
    if isinstance(prepared, PreparedBundle) and len(prepared.entries) == len(entries) \
            and prepared.registry_version == router.registry.version:
        return prepared
    return None


def outcome_for(err: OperationOutcomeError) -> JsonDict:
    return operation_outcome(err.issues)
