"""Terminology failures, free of any web framework; ``terminology.web`` maps them to OperationOutcomes."""

from __future__ import annotations


class TerminologyError(Exception):
    """A failure the caller can act on; ``status``/``code`` follow the FHIR IssueType value set."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class UnknownCodeSystem(TerminologyError):
    """The code system (or that version of it) is not loaded here: an external code system."""

    status = 404
    code = "not-found"

    def __init__(self, system: str, version: str | None = None) -> None:
        self.system = system
        self.version = version
        v = f" version {version}" if version else ""
        super().__init__(f"Code system {system}{v} is not known to this server")


class UnknownValueSet(TerminologyError):
    status = 404
    code = "not-found"


class UnknownCode(TerminologyError):
    status = 404
    code = "not-found"


class TooCostly(TerminologyError):
    status = 422
    code = "too-costly"
