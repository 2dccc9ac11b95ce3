"""SMART scope enforcement on the FHIR API.

The router calls these hooks at every interaction; an unrestricted
``RequestContext`` (authorization off, internal system callers) is allowed
everything. Scope grammar (SMART App Launch 2.2, v1 and v2)::

    (patient|user|system)/(Type|*).(read|write|*|[c][r][u][d][s])[?param=value&...]

Patient-level grants (and user-level grants of a Patient user) confine access to
the patient compartment from the official CompartmentDefinition-patient;
resource types outside that compartment (Medication, Practitioner, ...) are not
confined. Granular ``?category=`` style parameters narrow to matching resources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhir_server.errors import OperationOutcomeError, forbidden
from fhir_server.model import JsonDict, RequestContext

# Which SMART v2 permission an interaction needs. History of one instance is a
# read; type/system history and searches are searches (SMART 2.2 section 3.0.2).
INTERACTION_PERMISSION: dict[str, str] = {
    "read": "r", "vread": "r", "history-instance": "r", "history": "r",
    "search": "s", "search-type": "s", "search-system": "s", "history-type": "s", "history-system": "s",
    "create": "c", "update": "u", "patch": "u", "delete": "d",
    "operation": "r", "export": "r",
}
# Interactions whose content is checked entry by entry (each entry calls the hooks again).
_CONTAINER_INTERACTIONS = frozenset({"transaction", "batch", "capabilities", "metadata"})

_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE_RE = re.compile(
    r"^(?P<level>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>read|write|\*|c?r?u?d?s?)"
    r"(?:\?(?P<query>.+))?$")


@dataclass(frozen=True)
class ScopeRule:
    """One parsed resource scope."""

    level: str
    resource_type: str
    permissions: frozenset[str]
    params: tuple[tuple[str, str], ...] = ()
    v1: bool = False

    def covers(self, resource_type: str | None, permission: str) -> bool:
        return permission in self.permissions and (
            self.resource_type == "*" or resource_type is None or self.resource_type == resource_type)


def parse_scope(scope: str) -> ScopeRule | None:
    """Parse a SMART resource scope; ``None`` for non-resource scopes (openid, launch, ...)."""
    m = _SCOPE_RE.match(scope)
    if m is None or m.group("perm") == "":
        return None
    perm = m.group("perm")
    v1 = perm in _V1
    perms = frozenset(_V1[perm] if v1 else perm)
    params: list[tuple[str, str]] = []
    if m.group("query"):
        for part in m.group("query").split("&"):
            key, sep, value = part.partition("=")
            if not sep or not key or not value:
                return None
            params.append((key, value))
    return ScopeRule(m.group("level"), m.group("type"), perms, tuple(params), v1)


def is_valid_scope(scope: str) -> bool:
    """True for resource scopes and the SMART/OIDC non-resource scopes we know."""
    if parse_scope(scope) is not None:
        return True
    return scope in {"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
                     "offline_access", "online_access"}


@lru_cache(maxsize=256)
def parse_scopes(scopes: frozenset[str]) -> tuple[ScopeRule, ...]:
    return tuple(r for r in (parse_scope(s) for s in sorted(scopes)) if r is not None)


def scope_within(requested: str, granted: Iterable[str]) -> bool:
    """True when ``requested`` grants nothing beyond the union of ``granted`` (refresh narrowing)."""
    granted = list(granted)
    if requested in granted:
        return True
    rule = parse_scope(requested)
    if rule is None:
        return False
    for g in (parse_scope(s) for s in granted):
        if g is None or g.level != rule.level:
            continue
        if g.resource_type not in ("*", rule.resource_type):
            continue
        if not rule.permissions <= g.permissions:
            continue
        if g.params and set(g.params) - set(rule.params):
            continue
        return True
    return False


def _patient_anchor(ctx: RequestContext, rule: ScopeRule) -> str | None:
    """The patient id a rule is confined to, ``""`` when confined but without context, or None."""
    if rule.level == "patient":
        return ctx.patient or ""
    if rule.level == "user" and ctx.fhir_user and _ref_id(ctx.fhir_user, "Patient"):
        return _ref_id(ctx.fhir_user, "Patient")
    return None


def _ref_id(reference: str, resource_type: str) -> str | None:
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == resource_type:
        return parts[-1]
    return None


def _rules(ctx: RequestContext, resource_type: str | None, permission: str) -> list[ScopeRule]:
    return [r for r in parse_scopes(ctx.scopes or frozenset()) if r.covers(resource_type, permission)]


def check_interaction(ctx: RequestContext, interaction: str, resource_type: str | None) -> None:
    """Raise 403 when ``ctx`` may not perform ``interaction`` (read/search/create/update/delete/...)
    on ``resource_type``."""
    if ctx.unrestricted or interaction in _CONTAINER_INTERACTIONS:
        return
    permission = INTERACTION_PERMISSION.get(interaction, "r")
    rules = _rules(ctx, resource_type, permission)
    if resource_type is None and permission == "s":
        # Whole-system search/history is only for unconfined wildcard grants.
        rules = [r for r in rules if r.resource_type == "*" and _patient_anchor(ctx, r) is None]
    if not rules:
        what = resource_type or "the system"
        raise forbidden(f"The access token's scopes do not permit '{interaction}' on {what}")
    in_compartment = resource_type in PATIENT_COMPARTMENT or resource_type == "Patient"
    if in_compartment and all(_patient_anchor(ctx, r) == "" for r in rules):
        raise forbidden("Patient-level scopes need a patient in the launch context")


def check_maintenance(ctx: RequestContext, operation: str, interaction: str, resource_type: str | None) -> None:
    """403 unless ``ctx`` holds a system-level grant for ``interaction`` on ``resource_type`` (every type when
    None): maintenance operations such as ``$reindex`` act on all patients' data, so patient- and user-level
    grants never reach them, whatever their resource types."""
    if ctx.unrestricted:
        return
    permission = INTERACTION_PERMISSION.get(interaction, "r")
    if not any(r.level == "system" and r.resource_type in ("*", resource_type) and not r.params
               for r in _rules(ctx, resource_type, permission)):
        scope = f"system/{resource_type or '*'}.{permission}"
        raise forbidden(f"${operation} needs a system-level scope such as {scope}")


def permits(ctx: RequestContext, interaction: str, resource_type: str | None) -> bool:
    """``check_interaction`` as a question: for operations that take what the grant allows of a set of types."""
    try:
        check_interaction(ctx, interaction, resource_type)
    except OperationOutcomeError:
        return False
    return True


def check_resource(ctx: RequestContext, interaction: str, resource: JsonDict) -> None:
    """Raise 403 when a concrete resource (read result, or body to write) is outside the grant,
    e.g. outside the patient compartment of a patient-level token."""
    if ctx.unrestricted or interaction in _CONTAINER_INTERACTIONS:
        return
    resource_type = str(resource.get("resourceType", ""))
    permission = INTERACTION_PERMISSION.get(interaction, "r")
    # A resource returned by a search is governed by read or search grants alike.
    perms = ("r", "s") if permission in ("r", "s") else (permission,)
    for p in perms:
        for rule in _rules(ctx, resource_type, p):
            if _rule_allows(ctx, rule, resource):
                return
    raise forbidden(f"{resource_type}/{resource.get('id', '')} is outside the access token's scopes")


def _rule_allows(ctx: RequestContext, rule: ScopeRule, resource: JsonDict) -> bool:
    anchor = _patient_anchor(ctx, rule)
    if anchor is not None and not in_patient_compartment(resource, anchor):
        return False
    return all(_matches_param(resource, name, value) for name, value in rule.params)


def in_patient_compartment(resource: JsonDict, patient_id: str) -> bool:
    """Membership in Patient/``patient_id``'s compartment; types outside the compartment pass."""
    rtype = resource.get("resourceType")
    if not patient_id:
        return rtype not in PATIENT_COMPARTMENT and rtype != "Patient"
    if rtype == "Patient" and resource.get("id") == patient_id:
        return True
    entry = PATIENT_COMPARTMENT.get(str(rtype))
    if entry is None:
        return rtype != "Patient"
    for path in entry[1]:
        for ref in _walk(resource, path.split(".")):
            if isinstance(ref, dict) and _ref_id(str(ref.get("reference", "")), "Patient") == patient_id:
                return True
    return False


def compartment_patients(resource: JsonDict) -> set[str]:
    """Ids of the patients whose compartment holds ``resource`` (bulk export cohorts)."""
    rtype = str(resource.get("resourceType"))
    out: set[str] = set()
    if rtype == "Patient" and resource.get("id"):
        out.add(str(resource["id"]))
    for path in PATIENT_COMPARTMENT.get(rtype, ((), ()))[1]:
        for ref in _walk(resource, path.split(".")):
            if isinstance(ref, dict):
                pid = _ref_id(str(ref.get("reference", "")), "Patient")
                if pid:
                    out.add(pid)
    return out


def check_search_targets(ctx: RequestContext, resource_types: Iterable[str]) -> None:
    """403 unless ``ctx`` may search every type a chain or ``_has`` reaches into; without this a
    ``Patient?_has:Observation:...`` search would reveal Observations the token cannot read."""
    for rtype in resource_types:
        check_interaction(ctx, "search", rtype)


def _walk(node: Any, steps: list[str]) -> Iterator[Any]:
    if not steps:
        if isinstance(node, list):
            yield from node
        else:
            yield node
        return
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, steps)
    elif isinstance(node, dict) and steps[0] in node:
        yield from _walk(node[steps[0]], steps[1:])


def _element_name(param: str) -> str:
    head, *rest = param.split("-")
    return head + "".join(p.capitalize() for p in rest)


def _matches_param(resource: JsonDict, name: str, value: str) -> bool:
    """Token match of a granular scope parameter (``category=system|code``, comma = OR)."""
    element = _element_name(name)
    found = list(_walk(resource, [element]))
    for wanted in value.split(","):
        system, sep, code = wanted.rpartition("|")
        for item in found:
            for coding in _codings(item):
                if coding.get("code") == code and (not sep or coding.get("system") == system):
                    return True
    return False


def _codings(item: Any) -> Iterator[JsonDict]:
    if isinstance(item, str):
        yield {"code": item}
    elif isinstance(item, dict):
        if "coding" in item:
            yield from (c for c in item["coding"] if isinstance(c, dict))
        elif "code" in item:
            yield item


def search_restrictions(ctx: RequestContext, resource_type: str) -> list[tuple[str, str]]:
    """Extra search parameters ANDed into every search of ``resource_type`` for ``ctx``
    (patient compartment, granular ``?category=`` scopes)."""
    if ctx.unrestricted:
        return []
    rules = _rules(ctx, resource_type, "s") or _rules(ctx, resource_type, "r")
    if not rules:
        return []
    out: list[tuple[str, str]] = []
    anchors = {_patient_anchor(ctx, r) for r in rules}
    if None not in anchors and len(anchors) == 1:
        (anchor,) = anchors
        if resource_type == "Patient":
            out.append(("_id", anchor or "-"))
        elif resource_type in PATIENT_COMPARTMENT:
            params = PATIENT_COMPARTMENT[resource_type][0]
            param = "patient" if "patient" in params else params[0]
            out.append((param, f"Patient/{anchor or '-'}"))
    names = {tuple(n for n, _ in r.params) for r in rules}
    if len(names) == 1:
        (only,) = names
        if len(only) == 1:
            values = [r.params[0][1] for r in rules]
            out.append((only[0], ",".join(dict.fromkeys(",".join(values).split(",")))))
    return out


# --- generated by smart_apps/tools/gen_compartment.py from CompartmentDefinition-patient (R4 4.0.1):
# type -> (compartment search parameters, element paths holding the Patient reference)
PATIENT_COMPARTMENT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    'Account': (('subject',), ('subject',)),
    'AdverseEvent': (('subject',), ('subject',)),
    'AllergyIntolerance': (('patient', 'recorder', 'asserter'), ('patient', 'recorder', 'asserter')),
    'Appointment': (('actor',), ('participant.actor',)),
    'AppointmentResponse': (('actor',), ('actor',)),
    'AuditEvent': (('patient',), ('agent.who', 'entity.what')),
    'Basic': (('patient', 'author'), ('subject', 'author')),
    'BodyStructure': (('patient',), ('patient',)),
    'CarePlan': (('patient', 'performer'), ('subject', 'activity.detail.performer')),
    'CareTeam': (('patient', 'participant'), ('subject', 'participant.member')),
    'ChargeItem': (('subject',), ('subject',)),
    'Claim': (('patient', 'payee'), ('patient', 'payee.party')),
    'ClaimResponse': (('patient',), ('patient',)),
    'ClinicalImpression': (('subject',), ('subject',)),
    'Communication': (('subject', 'sender', 'recipient'), ('subject', 'sender', 'recipient')),
    'CommunicationRequest': (
        ('subject', 'sender', 'recipient', 'requester'),
        ('subject', 'sender', 'recipient', 'requester')),
    'Composition': (('subject', 'author', 'attester'), ('subject', 'author', 'attester.party')),
    'Condition': (('patient', 'asserter'), ('subject', 'asserter')),
    'Consent': (('patient',), ('patient',)),
    'Coverage': (
        ('policy-holder', 'subscriber', 'beneficiary', 'payor'),
        ('policyHolder', 'subscriber', 'beneficiary', 'payor')),
    'CoverageEligibilityRequest': (('patient',), ('patient',)),
    'CoverageEligibilityResponse': (('patient',), ('patient',)),
    'DetectedIssue': (('patient',), ('patient',)),
    'DeviceRequest': (('subject', 'performer'), ('subject', 'performer')),
    'DeviceUseStatement': (('subject',), ('subject',)),
    'DiagnosticReport': (('subject',), ('subject',)),
    'DocumentManifest': (('subject', 'author', 'recipient'), ('subject', 'author', 'recipient')),
    'DocumentReference': (('subject', 'author'), ('subject', 'author')),
    'Encounter': (('patient',), ('subject',)),
    'EnrollmentRequest': (('subject',), ('candidate',)),
    'EpisodeOfCare': (('patient',), ('patient',)),
    'ExplanationOfBenefit': (('patient', 'payee'), ('patient', 'payee.party')),
    'FamilyMemberHistory': (('patient',), ('patient',)),
    'Flag': (('patient',), ('subject',)),
    'Goal': (('patient',), ('subject',)),
    'Group': (('member',), ('member.entity',)),
    'ImagingStudy': (('patient',), ('subject',)),
    'Immunization': (('patient',), ('patient',)),
    'ImmunizationEvaluation': (('patient',), ('patient',)),
    'ImmunizationRecommendation': (('patient',), ('patient',)),
    'Invoice': (('subject', 'patient', 'recipient'), ('subject', 'recipient')),
    'List': (('subject', 'source'), ('subject', 'source')),
    'MeasureReport': (('patient',), ('subject',)),
    'Media': (('subject',), ('subject',)),
    'MedicationAdministration': (('patient', 'performer', 'subject'), ('subject', 'performer.actor')),
    'MedicationDispense': (('subject', 'patient', 'receiver'), ('subject', 'receiver')),
    'MedicationRequest': (('subject',), ('subject',)),
    'MedicationStatement': (('subject',), ('subject',)),
    'MolecularSequence': (('patient',), ('patient',)),
    'NutritionOrder': (('patient',), ('patient',)),
    'Observation': (('subject', 'performer'), ('subject', 'performer')),
    'Patient': (('link',), ('link.other',)),
    'Person': (('patient',), ('link.target',)),
    'Procedure': (('patient', 'performer'), ('subject', 'performer.actor')),
    'Provenance': (('patient',), ('target',)),
    'QuestionnaireResponse': (('subject', 'author'), ('subject', 'author')),
    'RelatedPerson': (('patient',), ('patient',)),
    'RequestGroup': (('subject', 'participant'), ('subject', 'action.participant')),
    'ResearchSubject': (('individual',), ('individual',)),
    'RiskAssessment': (('subject',), ('subject',)),
    'Schedule': (('actor',), ('actor',)),
    'ServiceRequest': (('subject', 'performer'), ('subject', 'performer')),
    'Specimen': (('subject',), ('subject',)),
    'SupplyDelivery': (('patient',), ('patient',)),
    'SupplyRequest': (('subject',), ('deliverTo',)),
    'VisionPrescription': (('patient',), ('patient',)),
}
