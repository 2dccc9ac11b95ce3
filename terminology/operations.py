"""The FHIR terminology operations as pure functions: Parameters in, resource out.

``terminology.web`` adapts them to the router; tests call them directly. Parameters
come from the query string and/or a ``Parameters`` body, as the spec allows both.
"""

from __future__ import annotations

from typing import Any

from terminology.errors import TerminologyError
from terminology.service import TerminologyService

JsonDict = dict[str, Any]


class Params:
    """A multi-map of operation parameters (query and body merged)."""

    def __init__(self, query: list[tuple[str, str]] | None = None, body: JsonDict | None = None) -> None:
        self.values: dict[str, list[Any]] = {}
        for k, v in query or []:
            self.values.setdefault(k, []).append(v)
        if body is not None:
            if body.get("resourceType") != "Parameters":
                raise TerminologyError("The operation body must be a Parameters resource")
            for p in body.get("parameter", []):
                name = p.get("name")
                if not name:
                    continue
                if "resource" in p:
                    self.values.setdefault(name, []).append(p["resource"])
                    continue
                for key, val in p.items():
                    if key.startswith("value"):
                        self.values.setdefault(name, []).append(val)

    def get(self, name: str) -> Any:
        vals = self.values.get(name)
        return vals[0] if vals else None

    def text(self, name: str) -> str | None:
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, dict):
            raise TerminologyError(f"Parameter {name} must be a simple value")
        return v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

    def integer(self, name: str) -> int | None:
        v = self.get(name)
        if v is None:
            return None
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise TerminologyError(f"Parameter {name} must be an integer, got {v!r}") from None
        if n < 0:
            raise TerminologyError(f"Parameter {name} must not be negative")
        return n

    def flag(self, name: str) -> bool | None:
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, bool):
            return v
        if str(v).lower() in ("true", "false"):
            return str(v).lower() == "true"
        raise TerminologyError(f"Parameter {name} must be true or false, got {v!r}")

    def complex(self, name: str) -> JsonDict | None:
        v = self.get(name)
        if v is not None and not isinstance(v, dict):
            raise TerminologyError(f"Parameter {name} must be a complex value (Coding, resource...)")
        return v


def _codings(p: Params, code_name: str = "code", coding_name: str = "coding") -> list[JsonDict]:
    """The coding(s) to work on: code+system(+version+display), a Coding, or a CodeableConcept."""
    code = p.text(code_name)
    if code:
        version = p.text("systemVersion") or p.text("version")
        return [{"system": p.text("system"), "code": code, "version": version, "display": p.text("display")}]
    coding = p.complex(coding_name)
    if coding is not None:
        return [coding]
    cc = p.complex("codeableConcept")
    if cc is not None:
        return list(cc.get("coding") or [])
    return []


def _param(name: str, value: Any) -> JsonDict | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, int):
        return {"name": name, "valueInteger": value}
    return {"name": name, "valueString": str(value)}


def _parameters(parts: list[JsonDict | None]) -> JsonDict:
    return {"resourceType": "Parameters", "parameter": [x for x in parts if x is not None]}


def lookup(svc: TerminologyService, p: Params, instance: JsonDict | None = None) -> JsonDict:
    codings = _codings(p)
    if not codings or not codings[0].get("code"):
        raise TerminologyError("$lookup needs code and system, or coding")
    c = codings[0]
    system = c.get("system") or (instance or {}).get("url")
    if not system:
        raise TerminologyError("$lookup needs a system")
    r = svc.lookup(system, c["code"], c.get("version"), p.text("displayLanguage"))
    wanted = set(p.values.get("property", []))
    parts: list[JsonDict | None] = [
        _param("name", r["name"]), _param("version", r["version"]), _param("display", r["display"]),
        _param("definition", r["definition"]),
        {"name": "abstract", "valueBoolean": bool(r["abstract"])},
    ]
    for d in r["designation"]:
        part: list[JsonDict] = []
        if d.get("language"):
            part.append({"name": "language", "valueCode": d["language"]})
        if d.get("use"):
            part.append({"name": "use", "valueCoding": d["use"]})
        part.append({"name": "value", "valueString": d["value"]})
        parts.append({"name": "designation", "part": part})
    for prop in r["property"]:
        if wanted and prop["code"] not in wanted:
            continue
        part = [{"name": "code", "valueCode": prop["code"]}, _property_value(prop)]
        if prop.get("description"):
            part.append({"name": "description", "valueString": prop["description"]})
        parts.append({"name": "property", "part": part})
    return _parameters(parts)


def _property_value(prop: JsonDict) -> JsonDict:
    t, v = prop["type"], prop["value"]
    if t == "boolean":
        return {"name": "value", "valueBoolean": v == "true"}
    if t == "integer":
        return {"name": "value", "valueInteger": int(v)}
    if t == "decimal":
        return {"name": "value", "valueDecimal": float(v)}
    if t == "coding":
        return {"name": "value", "valueCoding": {"system": prop.get("system"), "code": v}}
    if t == "code":
        return {"name": "value", "valueCode": v}
    if t == "dateTime":
        return {"name": "value", "valueDateTime": v}
    return {"name": "value", "valueString": v}


def validate_code(svc: TerminologyService, p: Params, resource_type: str, instance: JsonDict | None = None,
                  ) -> JsonDict:
    codings = _codings(p)
    if not codings:
        raise TerminologyError("$validate-code needs code, coding or codeableConcept")
    target: str | JsonDict | None
    if resource_type == "ValueSet":
        target = instance or p.complex("valueSet") or p.text("url")
        if target is None:
            raise TerminologyError("ValueSet/$validate-code needs url, valueSet, or an instance")
    else:
        target = None
        cs_url = (instance or {}).get("url") or p.text("url")
        for c in codings:
            c.setdefault("system", cs_url)
            if not c.get("system"):
                c["system"] = cs_url
    results = []
    for c in codings:
        if not c.get("code"):
            continue
        results.append(svc.validate_code(target, c.get("system"), c["code"], c.get("display"),
                                         c.get("version")))
    if not results:
        raise TerminologyError("No code to validate")
    ok = [r for r in results if r["result"]]
    best = ok[0] if ok else results[0]
    message = best.get("message") or ("; ".join(r["message"] for r in results if r.get("message")) or None)
    return _parameters([{"name": "result", "valueBoolean": bool(ok)}, _param("message", message),
                        _param("display", best.get("display")),
                        {"name": "code", "valueCode": best["code"]} if best.get("code") else None,
                        {"name": "system", "valueUri": best["system"]} if best.get("system") else None,
                        {"name": "inactive", "valueBoolean": True} if best.get("inactive") else None])


def subsumes(svc: TerminologyService, p: Params, instance: JsonDict | None = None) -> JsonDict:
    system = p.text("system") or (instance or {}).get("url")
    a, b = p.text("codeA"), p.text("codeB")
    ca, cb = p.complex("codingA"), p.complex("codingB")
    if ca is not None and cb is not None:
        if ca.get("system") != cb.get("system"):
            raise TerminologyError("codingA and codingB must have the same system")
        system = system or ca.get("system")
        a, b = ca.get("code"), cb.get("code")
    if not (a and b and system):
        raise TerminologyError("$subsumes needs codeA, codeB and system (or codingA and codingB)")
    outcome = svc.subsumes(system, a, b, p.text("version"))
    return _parameters([{"name": "outcome", "valueCode": outcome}])


def expand(svc: TerminologyService, p: Params, instance: JsonDict | None = None) -> JsonDict:
    target = instance or p.complex("valueSet") or p.text("url")
    if target is None:
        raise TerminologyError("$expand needs url, valueSet, or a ValueSet instance")
    if isinstance(target, str) and p.text("valueSetVersion"):
        target = f"{target}|{p.text('valueSetVersion')}"
    return svc.expand(target, filter=p.text("filter"), count=p.integer("count"), offset=p.integer("offset"),
                      active_only=p.flag("activeOnly"), display_language=p.text("displayLanguage"),
                      include_designations=bool(p.flag("includeDesignations")))


def translate(svc: TerminologyService, p: Params, instance: JsonDict | None = None) -> JsonDict:
    codings = _codings(p)
    if not codings:
        raise TerminologyError("$translate needs code and system, coding or codeableConcept")
    url = (instance or {}).get("url") or p.text("url")
    if instance is not None and instance.get("version"):
        url = f"{url}|{instance['version']}"
    matches: list[JsonDict] = []
    result = False
    message = None
    for c in codings:
        r = svc.translate(c.get("system") or "", c.get("code") or "", url=url, source=p.text("source"),
                          target=p.text("target"), target_system=p.text("targetsystem"),
                          reverse=bool(p.flag("reverse")))
        result = result or r["result"]
        message = message or r["message"]
        matches.extend(r["match"])
    parts: list[JsonDict | None] = [{"name": "result", "valueBoolean": result},
                                    None if result else _param("message", message)]
    for m in matches:
        part: list[JsonDict] = [{"name": "equivalence", "valueCode": m["equivalence"]}]
        if "concept" in m:
            part.append({"name": "concept", "valueCoding": m["concept"]})
        part.append({"name": "source", "valueUri": m["source"]})
        parts.append({"name": "match", "part": part})
    return _parameters(parts)
