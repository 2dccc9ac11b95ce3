"""AuditEvents for authorization decisions (login, token issue/refresh/revoke, denials)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

AuditSink = Callable[[dict[str, Any]], None]

# DICOM audit event types (http://dicom.nema.org/resources/ontology/DCM) used by IHE BALP.
_TYPES = {
    "login": ("110114", "User Authentication"),
    "token": ("110114", "User Authentication"),
    "refresh": ("110114", "User Authentication"),
    "revoke": ("110114", "User Authentication"),
    "denied": ("110113", "Security Alert"),
}


def audit_event(action: str, success: bool, *, client_id: str | None = None, user: str | None = None,
                fhir_user: str | None = None, detail: str = "",
                source: str = "DigitalFront SMART") -> dict[str, Any]:
    """Build an AuditEvent; ``action`` is one of login, token, refresh, revoke, denied."""
    code, display = _TYPES[action]
    agents: list[dict[str, Any]] = []
    if user or fhir_user:
        who: dict[str, Any] = {"display": user or fhir_user}
        if fhir_user:
            who = {"reference": fhir_user, "display": user or fhir_user}
        agents.append({"who": who, "requestor": True})
    if client_id:
        agents.append({"who": {"identifier": {"system": "urn:digitalfront:oauth-client", "value": client_id}},
                       "requestor": not agents})
    if not agents:
        agents.append({"who": {"display": "anonymous"}, "requestor": True})
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": code, "display": display},
        "subtype": [{"system": "urn:digitalfront:smart-audit", "code": action}],
        "action": "E",
        "recorded": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": "0" if success else "4",
        "outcomeDesc": detail[:1000] if detail else ("success" if success else "failure"),
        "agent": agents,
        "source": {"observer": {"display": source}},
    }


class Auditor:
    """Writes AuditEvents through a sink; an audit failure is logged, never fails the request."""

    def __init__(self, sink: AuditSink | None = None) -> None:
        self.sink = sink

    def __call__(self, action: str, success: bool, **kw: Any) -> None:
        if self.sink is None:
            return
        try:
            self.sink(audit_event(action, success, **kw))
        except Exception:  # noqa: BLE001 - auditing must not break authorization
            log.exception("could not record AuditEvent for %s", action)
