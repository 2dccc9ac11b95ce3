"""CDS Hooks failures mapped to HTTP statuses in one place (``cds_hooks.web``)."""

from __future__ import annotations


class CdsError(Exception):
    """A client-visible failure: 400 bad request, 401, 404, 412 missing data."""

    def __init__(self, status: int, message: str, issues: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.issues = issues or []


def bad_request(message: str, issues: list[str] | None = None) -> CdsError:
    return CdsError(400, message, issues)


def precondition_failed(message: str) -> CdsError:
    return CdsError(412, message)


class AuthError(Exception):
    """JWT rejected; the reason is logged, never sent (spec: 401 without detail)."""
