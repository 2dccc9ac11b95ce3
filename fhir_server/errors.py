"""The one error type of the FHIR core and its mapping to OperationOutcome.

Every failure that reaches a client is an ``OperationOutcomeError``; the router
turns it into a response in exactly one place (``FhirRouter.handle``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    """One OperationOutcome.issue; ``code`` is from the IssueType value set."""

    severity: str
    code: str
    diagnostics: str
    expression: list[str] = field(default_factory=list)

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class OperationOutcomeError(Exception):
    """Raised anywhere in core logic; carries the HTTP status and the issues."""

    def __init__(self, status: int, issues: list[Issue] | str, code: str = "processing",
                 headers: dict[str, str] | None = None) -> None:
        if isinstance(issues, str):
            issues = [Issue("error" if status < 500 else "fatal", code, issues)]
        self.status = status
        self.issues = issues
        self.headers = headers or {}
        super().__init__("; ".join(i.diagnostics for i in issues))

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def informational(text: str, code: str = "informational") -> dict[str, Any]:
    return operation_outcome([Issue("information", code, text)])


# Short constructors for the common statuses, so call sites read like the spec.
def bad_request(msg: str, code: str = "invalid", expression: list[str] | None = None) -> OperationOutcomeError:
    return OperationOutcomeError(400, [Issue("error", code, msg, expression or [])])


def not_found(msg: str) -> OperationOutcomeError:
    return OperationOutcomeError(404, msg, code="not-found")


def gone(msg: str, headers: dict[str, str] | None = None) -> OperationOutcomeError:
    return OperationOutcomeError(410, msg, code="deleted", headers=headers)


def conflict(msg: str) -> OperationOutcomeError:
    return OperationOutcomeError(409, msg, code="conflict")


def precondition_failed(msg: str) -> OperationOutcomeError:
    return OperationOutcomeError(412, msg, code="conflict")


def unprocessable(issues: list[Issue] | str) -> OperationOutcomeError:
    return OperationOutcomeError(422, issues, code="processing")


def forbidden(msg: str) -> OperationOutcomeError:
    return OperationOutcomeError(403, msg, code="forbidden")


def unauthorized(msg: str, headers: dict[str, str] | None = None) -> OperationOutcomeError:
    return OperationOutcomeError(401, msg, code="login", headers=headers)


def unavailable(msg: str, retry_after_s: int) -> OperationOutcomeError:
    return OperationOutcomeError(503, msg, code="transient", headers={"Retry-After": str(retry_after_s)})


def not_supported(msg: str, status: int = 405) -> OperationOutcomeError:
    return OperationOutcomeError(status, msg, code="not-supported")
