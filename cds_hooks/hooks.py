"""The hooks we know and the context each one carries (CDS Hooks hook library, v1.0/2.0)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ContextField:
    name: str
    required: bool
    kind: str  # "id" | "user" | "refs" | "bundle" | "any"


@dataclass(frozen=True)
class HookDefinition:
    name: str
    fields: tuple[ContextField, ...]


_USER = ContextField("userId", True, "user")
_PATIENT = ContextField("patientId", True, "id")

HOOKS: dict[str, HookDefinition] = {
    h.name: h
    for h in (
        HookDefinition("patient-view", (_USER, _PATIENT, ContextField("encounterId", False, "id"))),
        HookDefinition("order-select", (
            _USER, _PATIENT, ContextField("encounterId", False, "id"),
            ContextField("selections", True, "refs"), ContextField("draftOrders", True, "bundle"))),
        HookDefinition("order-sign", (
            _USER, _PATIENT, ContextField("encounterId", False, "id"),
            ContextField("draftOrders", True, "bundle"))),
        HookDefinition("order-dispatch", (
            ContextField("patientId", True, "id"), ContextField("dispatchedOrders", True, "any"),
            ContextField("performer", True, "any"), ContextField("fulfillmentTasks", False, "any"))),
        HookDefinition("encounter-start", (_USER, _PATIENT, ContextField("encounterId", True, "id"))),
        HookDefinition("encounter-discharge", (_USER, _PATIENT, ContextField("encounterId", True, "id"))),
        HookDefinition("appointment-book", (
            _USER, _PATIENT, ContextField("encounterId", False, "id"),
            ContextField("appointments", True, "bundle"))),
    )
}

USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")
