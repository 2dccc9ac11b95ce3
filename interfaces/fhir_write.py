"""The one write path into the FHIR core: a transaction through the in-process router.

``router_transaction`` commits one message per transaction; ``RouterGroupWriter`` lets the pipeline
apply a group of messages in one database transaction (one commit, one fsync), each message in its
own savepoint so a rejected message never affects the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection

from fhir_server.errors import Issue, OperationOutcomeError
from fhir_server.interactions.prepared import PreparedBundle
from fhir_server.model import SYSTEM_CONTEXT, FhirRequest
from fhir_server.repository import PartialStepWrite


def router_transaction(router: Any) -> Any:
    """An ``apply_transaction(bundle) -> response bundle`` bound to ``router`` (system context)."""

    def apply(bundle: dict[str, Any]) -> dict[str, Any]:
        resp = router.handle(FhirRequest("POST", "", resource=bundle, context=SYSTEM_CONTEXT))
        if resp.status >= 400 or resp.resource is None:
            oo = resp.resource or {}
            issues = [
                Issue(
                    i.get("severity", "error"),
                    i.get("code", "processing"),
                    i.get("diagnostics", ""),
                    i.get("expression", []),
                )
                for i in oo.get("issue", [])
            ] or f"HTTP {resp.status}"
            raise OperationOutcomeError(resp.status, issues)
        result: dict[str, Any] = resp.resource
        return result

    return apply


class GroupTransaction:
    """One database transaction shared by several messages (group commit), each in its own savepoint."""

    def __init__(self, router: Any, uow: Any) -> None:
        self.router = router
        self.uow = uow

    @property
    def connection(self) -> Connection:
        """The transaction's connection, so message-store rows commit together with the FHIR writes."""
        conn: Connection | None = getattr(self.uow, "_conn", None)
        if conn is None:
            raise RuntimeError("the repository's unit of work exposes no connection")
        return conn

    def apply(self, bundle: dict[str, Any], prepared: PreparedBundle | None = None) -> dict[str, Any]:
        """Apply one message's transaction Bundle all-or-nothing; raises OperationOutcomeError on rejection.

        ``prepared``: its validation and index rows, worked out ahead by a worker process."""
        try:
            with self.uow.savepoint():
                resp = self.router.dispatch(FhirRequest("POST", "", resource=bundle, context=SYSTEM_CONTEXT,
                                                        prepared=prepared), self.uow)
        except (OperationOutcomeError, PartialStepWrite):
            raise
        except Exception as exc:  # a lost race (409) or a busy database (503), as the router answers them
            known = self.uow.failure_outcome(exc)
            if known is None:
                raise
            raise known from exc
        if resp.status >= 400 or resp.resource is None:
            raise OperationOutcomeError(resp.status, f"HTTP {resp.status}")
        result: dict[str, Any] = resp.resource
        return result


class RouterGroupWriter:
    """Opens group transactions on ``repo`` (the router's repository, same engine as the message store)."""

    def __init__(self, router: Any, repo: Any) -> None:
        self.router = router
        self.repo = repo

    @contextmanager
    def transaction(self) -> Iterator[GroupTransaction]:
        with self.repo.unit_of_work() as uow:
            yield GroupTransaction(self.router, uow)
