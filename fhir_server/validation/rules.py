"""Invariants of the base spec that matter most in practice, written as code.

Each rule names its spec key (``bdl-7``, ``dom-3``, ``per-1``...). They are
hand-written rather than evaluated as FHIRPath so the write path stays fast.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fhir_server.validation.references import reference_type

if TYPE_CHECKING:
    from fhir_server.validation.structure import Rule, Walker

_ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_UNIQUE_LINKS = {"self", "first", "previous", "prev", "next", "last"}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def domain_resource(w: Walker, res: dict[str, Any], path: str) -> None:
    """dom-2..dom-5 on contained resources."""
    contained = res.get("contained")
    if not isinstance(contained, list) or not contained:
        return
    local_refs = {s for s in _strings(res) if s.startswith("#")}
    for i, c in enumerate(contained):
        if not isinstance(c, dict):
            continue
        cpath = f"{path}.contained[{i}]"
        if "contained" in c:
            w.rule(cpath, "A contained resource must not contain resources (dom-2)", "invariant")
        meta: dict[str, Any] = c["meta"] if isinstance(c.get("meta"), dict) else {}
        if "versionId" in meta or "lastUpdated" in meta:
            w.rule(cpath, "A contained resource must not have meta.versionId or meta.lastUpdated (dom-4)",
                    "invariant")
        if "security" in meta:
            w.rule(cpath, "A contained resource must not have security labels (dom-5)", "invariant")
        cid = c.get("id")
        if not isinstance(cid, str):
            w.rule(cpath, "A contained resource must have an id", "invariant")
        elif f"#{cid}" not in local_refs and "#" not in local_refs:
            w.rule(cpath, f"The contained resource '{cid}' is not referenced to from elsewhere in the "
                           "containing resource nor does it refer to the containing resource (dom-3)",
                    "invariant")


def bundle(w: Walker, res: dict[str, Any], path: str) -> None:
    btype = res.get("type")
    entries: list[Any] = res["entry"] if isinstance(res.get("entry"), list) else []
    if "total" in res and btype not in ("searchset", "history"):
        w.rule(f"{path}.total", "total only when a search or history (bdl-1)", "invariant")
    links: list[Any] = res["link"] if isinstance(res.get("link"), list) else []
    seen_rel: set[str] = set()
    for link in links:
        rel = link.get("relation") if isinstance(link, dict) else None
        if rel in _UNIQUE_LINKS:
            if rel in seen_rel:
                w.rule(f"{path}.link", f"The link relationship type '{rel}' can only occur once", "invariant")
            seen_rel.add(rel)
    if btype == "document":
        if "identifier" not in res:
            w.rule(path, "A document must have an identifier with a system and a value (bdl-9)", "invariant")
        if "timestamp" not in res:
            w.rule(path, "A document must have a date (bdl-10)", "invariant")
    if btype in ("document", "message") and entries:
        first = entries[0].get("resource") if isinstance(entries[0], dict) else None
        want = "Composition" if btype == "document" else "MessageHeader"
        if not isinstance(first, dict) or first.get("resourceType") != want:
            w.rule(f"{path}.entry[0]", f"A {btype} must start with a {want} (bdl-11/12)", "invariant")
    full_urls: dict[tuple[str, Any], int] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        epath = f"{path}.entry[{i}]"
        resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else None
        if not ({"resource", "request", "response"} & set(entry)):
            w.rule(epath, "An entry must have a resource, a request or a response (bdl-5)", "invariant")
        if "search" in entry and btype != "searchset":
            w.rule(epath, "entry.search only when a search (bdl-2)", "invariant")
        if "request" not in entry and btype in ("batch", "transaction", "history"):
            w.rule(epath, "entry.request mandatory for batch/transaction/history (bdl-3)", "invariant")
        if "response" not in entry and btype in ("batch-response", "transaction-response", "history"):
            w.rule(epath, "entry.response mandatory for batch-response/transaction-response/history (bdl-4)",
                    "invariant")
        if "request" in entry and btype not in ("batch", "transaction", "history"):
            w.rule(epath, "entry.request only for batch/transaction/history (bdl-3)", "invariant")
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            if not _ABSOLUTE_URL.match(full_url):
                w.rule(f"{epath}.fullUrl", f"The fullUrl must be an absolute URL (not '{full_url}')", "invalid")
            if "/_history/" in full_url:
                w.rule(f"{epath}.fullUrl", "fullUrl cannot be a version specific reference (bdl-8)",
                        "invariant")
            version = (resource or {}).get("meta", {}).get("versionId") if resource else None
            key = (full_url, version)
            if key in full_urls and btype != "history":
                w.rule(f"{epath}.fullUrl", f"Duplicate fullUrl '{full_url}' in the bundle (bdl-7)",
                        "invariant")
            full_urls[key] = i
            rid = resource.get("id") if resource else None
            if (rid and full_url.startswith("http") and reference_type(full_url) is not None
                    and not full_url.endswith(f"/{resource['resourceType']}/{rid}")):  # type: ignore[index]
                w.rule(f"{epath}.fullUrl", f"The fullUrl '{full_url}' does not match the resource id '{rid}'",
                        "invalid")
        if btype == "searchset" and resource is not None:
            mode = (entry.get("search") or {}).get("mode") if isinstance(entry.get("search"), dict) else None
            if mode == "outcome" and resource.get("resourceType") != "OperationOutcome":
                w.rule(f"{epath}.resource", f"This is not an OperationOutcome ({resource.get('resourceType')})",
                        "invalid")
            if not resource.get("id") and resource.get("resourceType") != "OperationOutcome":
                w.rule(f"{epath}.resource", "Search results must have ids", "invalid")


def _references(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                yield v, path
            elif k != "resource" or "resourceType" not in value:  # nested bundles resolve on their own
                yield from _references(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _references(v, f"{path}[{i}]")


def bundle_references(w: Walker, res: dict[str, Any], path: str) -> None:
    """Resolve literal references inside a bundle (bundle.html#references).

    Ambiguous matches are errors in every bundle; in a document every reference
    must also resolve inside the bundle.
    """
    btype = res.get("type")
    entry = res.get("entry")  # not an array: the structure walk reports it
    entries = [e for e in entry if isinstance(e, dict)] if isinstance(entry, list) else []
    index: dict[str, list[Any]] = {}
    for e in entries:
        if isinstance(e.get("fullUrl"), str) and isinstance(e.get("resource"), dict):
            meta = e["resource"].get("meta")
            index.setdefault(e["fullUrl"], []).append(meta.get("versionId") if isinstance(meta, dict) else None)
    if not index or btype in ("history", "searchset", "batch", "transaction", "batch-response",
                              "transaction-response"):
        return
    for i, e in enumerate(entries):
        resource, full_url = e.get("resource"), e.get("fullUrl")
        if not isinstance(resource, dict):
            continue
        base = None
        if isinstance(full_url, str) and reference_type(full_url) is not None and "://" in full_url:
            base = full_url.rsplit("/", 2)[0] + "/"
        for ref, rpath in _references(resource, f"{path}.entry[{i}].resource"):
            if ref.startswith("#"):
                continue
            if ":" in ref.split("/", 1)[0]:
                target = ref
            elif base is not None:
                target = base + ref
            else:
                continue
            url, _, version = target.partition("/_history/")
            versions = index.get(url, [])
            matches = [v for v in versions if v == version] if version else versions
            if len(matches) > 1:
                w.rule(rpath, f"Multiple matches in bundle for reference {ref}", "invalid")
            elif not matches and btype == "document":
                w.rule(rpath, f"Can't find '{ref}' in the bundle", "invalid")


def attachment(w: Walker, value: dict[str, Any], path: str) -> None:
    data = value.get("data")
    if not isinstance(data, str):
        if "size" in value or "hash" in value:
            return
        return
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", data), validate=True)
    except (binascii.Error, ValueError):
        return  # reported by the base64Binary check
    size = value.get("size")
    if isinstance(size, int) and size != len(raw):
        w.rule(f"{path}.size", f"Stated Attachment Size {size} does not match actual attachment size "
                                f"{len(raw)}", "value")
    digest = value.get("hash")
    if isinstance(digest, str) and digest != base64.b64encode(hashlib.sha1(raw).digest()).decode():  # noqa: S324
        w.rule(f"{path}.hash", "Attachment.hash is not the base64 SHA-1 of the data", "value")


def _instant(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def period(w: Walker, value: dict[str, Any], path: str) -> None:
    start, end = value.get("start"), value.get("end")
    if not (isinstance(start, str) and isinstance(end, str)):
        return
    a, b = _instant(start), _instant(end)
    if len(start) > 10 and len(end) > 10 and a is not None and b is not None \
            and (a.tzinfo is None) == (b.tzinfo is None):
        bad = a > b
    else:
        # FHIRPath compares values of different precision as empty, and an empty
        # invariant fails: start=2023-06-21 vs end=2023-06-21T06:20Z violates per-1.
        n = min(len(start), len(end), 10)
        bad = start[:n] > end[:n] or (len(start) != len(end) and start[:n] == end[:n])
    if bad:
        w.rule(path, "If present, start SHALL have a lower value than end (per-1)", "invariant")


def coding(w: Walker, value: dict[str, Any], path: str) -> None:
    system = value.get("system")
    if isinstance(system, str) and ":" not in system:
        w.rule(f"{path}.system", "Coding.system must be an absolute reference, not a local reference", "value")


def quantity(w: Walker, value: dict[str, Any], path: str) -> None:
    if "code" in value and "system" not in value:
        w.rule(path, "If a code for the unit is present, the system SHALL also be present (qty-3)", "invariant")


def extension(w: Walker, value: dict[str, Any], path: str) -> None:
    has_value = any(k.startswith("value") or k.startswith("_value") for k in value)
    if has_value and "extension" in value:
        w.rule(path, "Must have either extensions or value[x], not both (ext-1)", "invariant")
    url = value.get("url")
    if isinstance(url, str) and "|" in url:
        w.rule(f"{path}.url", "The extension URL must not contain a version", "value")


def questionnaire_item(w: Walker, value: dict[str, Any], path: str) -> None:
    enable_when = value.get("enableWhen")
    if isinstance(enable_when, list) and len(enable_when) > 1 and "enableBehavior" not in value:
        w.rule(path, "If there are more than one enableWhen, enableBehavior must be specified (que-12)",
                "invariant")


def risk_assessment(w: Walker, res: dict[str, Any], path: str) -> None:
    for i, pred in enumerate(res.get("prediction") or []):
        if not isinstance(pred, dict):
            continue
        prob = pred.get("probabilityDecimal")
        rng = pred.get("probabilityRange")
        highs = [prob] if isinstance(prob, (int, float)) else []
        if isinstance(rng, dict):
            for end in ("low", "high"):
                v = (rng.get(end) or {}).get("value")
                if isinstance(v, (int, float)):
                    highs.append(v)
        if any(h > 100 for h in highs):
            w.rule(f"{path}.prediction[{i}]", "Must be <= 100 (ras-2)", "invariant")


def _questionnaire(w: Walker, res: dict[str, Any], path: str) -> None:
    def walk(items: Any, ipath: str) -> None:
        if not isinstance(items, list):
            return
        for i, item in enumerate(items):
            if isinstance(item, dict):
                questionnaire_item(w, item, f"{ipath}[{i}]")
                walk(item.get("item"), f"{ipath}[{i}].item")

    walk(res.get("item"), f"{path}.item")


def search_parameter(w: Walker, res: dict[str, Any], path: str) -> None:
    derived = res.get("derivedFrom")
    parent = w.model.search_params.get(derived.split("|", 1)[0]) if isinstance(derived, str) else None
    if parent is not None:
        if res.get("type") != parent["type"]:
            w.rule(f"{path}.type", f"The type {res.get('type')} is different to the type {parent['type']} in "
                                   f"the derivedFrom SearchParameter {derived}")
        for base in res.get("base") or []:
            if base not in parent["base"]:
                w.rule(f"{path}.base", f"The resource type {base} is not listed as a base in the "
                                       f"SearchParameter this is derived from ({derived})")
    components = res.get("component")
    if res.get("type") == "composite" and not (isinstance(components, list) and len(components) >= 2):
        w.rule(path, "When the SearchParameter has a type of 'composite', then the SearchParameter must "
                      "define two or more components", "invariant")


def capability_statement(w: Walker, res: dict[str, Any], path: str) -> None:
    for r, rest in enumerate(res.get("rest") or []):
        for t, rdef in enumerate(rest.get("resource") or [] if isinstance(rest, dict) else []):
            for s, sp in enumerate(rdef.get("searchParam") or [] if isinstance(rdef, dict) else []):
                if not isinstance(sp, dict) or not isinstance(sp.get("definition"), str):
                    continue
                known = w.model.search_params.get(sp["definition"].split("|", 1)[0])
                if known is not None and sp.get("type") != known["type"]:
                    w.rule(f"{path}.rest[{r}].resource[{t}].searchParam[{s}]",
                           f"Type mismatch - SearchParameter '{sp['definition']}' type is {known['type']}, "
                           f"but type here is {sp.get('type')}")


def _both(first: Rule, second: Rule) -> Rule:
    def run(w: Walker, res: dict[str, Any], path: str) -> None:
        first(w, res, path)
        second(w, res, path)

    return run


def _with_domain(rule: Rule) -> Rule:
    def both(w: Walker, res: dict[str, Any], path: str) -> None:
        domain_resource(w, res, path)
        rule(w, res, path)

    return both


def type_rules(resource_types: list[str]) -> dict[str, Rule]:
    """The rule per resource type / datatype name that the walker calls after the structure pass."""
    rules: dict[str, Rule] = {name: domain_resource for name in resource_types}
    rules["Bundle"] = _both(bundle, bundle_references)
    rules["Questionnaire"] = _with_domain(_questionnaire)
    rules["RiskAssessment"] = _with_domain(risk_assessment)
    rules["SearchParameter"] = _with_domain(search_parameter)
    rules["CapabilityStatement"] = _with_domain(capability_statement)
    rules.update({"Attachment": attachment, "Period": period, "Coding": coding, "Quantity": quantity,
                  "Extension": extension})
    for q in ("Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"):
        rules[q] = quantity
    return rules
