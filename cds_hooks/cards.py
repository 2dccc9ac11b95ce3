"""Cards, suggestions and actions, and the checker every response goes through.

The checker enforces the CDS Hooks 2.0 response rules (plus the stricter rules of
the FHIR validator's CDSHooksResponse logical model used by the corpus cases),
so an EHR never receives a card it would drop.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]

INDICATORS = ("info", "warning", "critical")
ACTION_TYPES = ("create", "update", "delete")
LINK_TYPES = ("absolute", "smart")
SELECTION = ("at-most-one", "any")
SUMMARY_MAX = 140


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Action:
    type: str
    description: str
    resource: JsonDict | None = None
    resource_id: str | None = None

    def to_json(self) -> JsonDict:
        out: JsonDict = {"type": self.type, "description": self.description}
        if self.resource is not None:
            out["resource"] = self.resource
        if self.resource_id:
            out["resourceId"] = self.resource_id
        return out


@dataclass
class Suggestion:
    label: str
    actions: list[Action] = field(default_factory=list)
    is_recommended: bool | None = None
    uuid: str = field(default_factory=new_id)

    def to_json(self) -> JsonDict:
        out: JsonDict = {"label": self.label, "uuid": self.uuid}
        if self.is_recommended is not None:
            out["isRecommended"] = self.is_recommended
        if self.actions:
            out["actions"] = [a.to_json() for a in self.actions]
        return out


@dataclass
class Link:
    label: str
    url: str
    type: str = "absolute"
    app_context: str | None = None

    def to_json(self) -> JsonDict:
        out: JsonDict = {"label": self.label, "url": self.url, "type": self.type}
        if self.app_context:
            out["appContext"] = self.app_context
        return out


@dataclass
class Card:
    summary: str
    indicator: str
    source_label: str
    detail: str | None = None
    source_url: str | None = None
    source_topic: JsonDict | None = None
    suggestions: list[Suggestion] = field(default_factory=list)
    selection_behavior: str | None = None
    override_reasons: list[JsonDict] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    uuid: str = field(default_factory=new_id)

    def to_json(self) -> JsonDict:
        source: JsonDict = {"label": self.source_label}
        if self.source_url:
            source["url"] = self.source_url
        if self.source_topic:
            source["topic"] = self.source_topic
        out: JsonDict = {"uuid": self.uuid, "summary": self.summary[:SUMMARY_MAX - 1],
                         "indicator": self.indicator, "source": source}
        if self.detail:
            out["detail"] = self.detail
        if self.suggestions:
            out["suggestions"] = [s.to_json() for s in self.suggestions]
            out["selectionBehavior"] = self.selection_behavior or "at-most-one"
        if self.override_reasons:
            out["overrideReasons"] = list(self.override_reasons)
        if self.links:
            out["links"] = [lk.to_json() for lk in self.links]
        return out


@dataclass
class CdsResponse:
    cards: list[Card] = field(default_factory=list)
    system_actions: list[Action] = field(default_factory=list)

    def to_json(self) -> JsonDict:
        out: JsonDict = {"cards": [c.to_json() for c in self.cards]}
        if self.system_actions:
            out["systemActions"] = [a.to_json() for a in self.system_actions]
        return out


def override_reason(code: str, display: str) -> JsonDict:
    return {"code": code, "system": "http://digitalfront.dev/fhir/CodeSystem/cds-override-reason",
            "display": display}


# ---------------------------------------------------------------- checking


def _empty_paths(value: Any, path: str, out: list[str]) -> None:
    if value is None or value == "" or value == [] or value == {}:
        out.append(f"{path} is empty or null")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _empty_paths(v, f"{path}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _empty_paths(v, f"{path}[{i}]", out)


def _check_action(a: Any, path: str, problems: list[str]) -> None:
    if not isinstance(a, dict):
        problems.append(f"{path} must be an object")
        return
    if a.get("type") not in ACTION_TYPES:
        problems.append(f"{path}.type must be one of {ACTION_TYPES}")
    if not isinstance(a.get("description"), str) or not a.get("description"):
        problems.append(f"{path}.description is required")
    res = a.get("resource")
    if a.get("type") in ("create", "update"):
        if not isinstance(res, dict) or not res.get("resourceType"):
            problems.append(f"{path}.resource with a resourceType is required for {a.get('type')}")
        elif not res.get("id"):
            problems.append(f"{path}.resource requires an id")
    if a.get("type") == "delete" and not a.get("resourceId"):
        problems.append(f"{path}.resourceId is required for delete")


def check_response(body: Any, strict: bool = True) -> list[str]:
    """Every rule a CDS Hooks 2.0 response breaks, as readable strings (empty list = valid).

    ``strict`` adds the spec's SHOULDs that we hold our own cards to (summary under
    140 characters, link ``type`` present); without it the checker matches the FHIR
    validator's CDSHooksResponse logical model.
    """
    problems: list[str] = []
    if not isinstance(body, dict) or "cards" not in body:
        return ["response must be an object with a cards array"]
    for k, v in body.items():
        if k != "cards":
            _empty_paths(v, k, problems)
    cards = body["cards"]
    if not isinstance(cards, list):
        return problems + ["cards must be an array"]
    for i, card in enumerate(cards):
        p = f"cards[{i}]"
        if not isinstance(card, dict):
            problems.append(f"{p} must be an object")
            continue
        _empty_paths(card, p, problems)
        summary = card.get("summary")
        if not isinstance(summary, str) or not summary:
            problems.append(f"{p}.summary is required")
        elif strict and len(summary) >= SUMMARY_MAX:
            problems.append(f"{p}.summary must be shorter than {SUMMARY_MAX} characters")
        if card.get("indicator") not in INDICATORS:
            problems.append(f"{p}.indicator must be one of {INDICATORS}")
        source = card.get("source")
        if not isinstance(source, dict) or not source.get("label"):
            problems.append(f"{p}.source.label is required")
        suggestions = card.get("suggestions") or []
        if suggestions and card.get("selectionBehavior") not in SELECTION:
            problems.append(f"{p}: selectionBehavior is required when suggestions are present")
        for j, s in enumerate(suggestions):
            if not isinstance(s, dict) or not s.get("label"):
                problems.append(f"{p}.suggestions[{j}].label is required")
                continue
            for k, a in enumerate(s.get("actions") or []):
                _check_action(a, f"{p}.suggestions[{j}].actions[{k}]", problems)
        for j, r in enumerate(card.get("overrideReasons") or []):
            if not isinstance(r, dict) or not r.get("code") or not r.get("display"):
                problems.append(f"{p}.overrideReasons[{j}] must be a Coding with code and display")
        for j, link in enumerate(card.get("links") or []):
            lp = f"{p}.links[{j}]"
            if not isinstance(link, dict):
                problems.append(f"{lp} must be an object")
                continue
            for req in ("label", "url", "type") if strict else ("label", "url"):
                if not link.get(req):
                    problems.append(f"{lp}.{req} is required")
            if link.get("type") and link["type"] not in LINK_TYPES:
                problems.append(f"{lp}.type must be absolute or smart")
            if link.get("appContext") and link.get("type") != "smart":
                problems.append(f"{lp}.appContext is only allowed on smart links")
    for k, a in enumerate(body.get("systemActions") or []):
        _check_action(a, f"systemActions[{k}]", problems)
    return problems


def check_discovery(body: Any) -> list[str]:
    """Rules of the discovery document: each service has hook, description and a unique id."""
    problems: list[str] = []
    if not isinstance(body, dict) or not isinstance(body.get("services"), list):
        return ["discovery must be an object with a services array"]
    seen: set[str] = set()
    for i, s in enumerate(body["services"]):
        p = f"services[{i}]"
        if not isinstance(s, dict):
            problems.append(f"{p} must be an object")
            continue
        _empty_paths(s, p, problems)
        for req in ("hook", "description", "id"):
            if not isinstance(s.get(req), str) or not s.get(req):
                problems.append(f"{p}.{req} is required")
        if s.get("id") in seen:
            problems.append(f"{p}.id {s.get('id')!r} is not unique")
        seen.add(str(s.get("id")))
        prefetch = s.get("prefetch", {})
        if not isinstance(prefetch, dict) or not all(isinstance(v, str) for v in prefetch.values()):
            problems.append(f"{p}.prefetch must map keys to query strings")
    return problems
