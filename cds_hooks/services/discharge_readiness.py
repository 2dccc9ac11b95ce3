"""encounter-discharge discharge-readiness: pending results, missing follow-up, medication reconciliation gaps.

Each gap is its own card so the clinician can accept or override it separately;
a ready patient gets no card at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cds_hooks.cards import Action, Card, CdsResponse, Suggestion, new_id, override_reason
from cds_hooks.fhirdata import concept_text, parse_dt, ref_id
from cds_hooks.prefetch import PrefetchData
from cds_hooks.registry import CdsService, ServiceEnv

JsonDict = dict[str, Any]
SOURCE = "DigitalFront discharge readiness"
PENDING_REPORT = ("registered", "partial", "preliminary")
PENDING_OBS = ("registered", "preliminary")
FOLLOW_UP_DAYS = 30
CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"


def _category(mr: JsonDict) -> set[str]:
    return {c.get("code") for cc in mr.get("category") or [] for c in (cc.get("coding") or [])
            if c.get("system") in (CATEGORY, None)}


class DischargeReadiness(CdsService):
    id = "discharge-readiness"
    hook = "encounter-discharge"
    title = "Discharge readiness"
    description = ("At discharge, lists results still pending, a missing follow-up appointment and "
                   "inpatient medication orders not reconciled into a discharge medication list.")
    prefetch = {
        "patient": "Patient/{{context.patientId}}",
        "encounter": "Encounter/{{context.encounterId}}",
        "reports": "DiagnosticReport?patient={{context.patientId}}&encounter={{context.encounterId}}",
        "observations": "Observation?patient={{context.patientId}}&encounter={{context.encounterId}}"
                        "&status=registered,preliminary",
        "orders": "ServiceRequest?patient={{context.patientId}}&status=active",
        "appointments": "Appointment?patient={{context.patientId}}&status=proposed,pending,booked",
        "medications": "MedicationRequest?patient={{context.patientId}}&status=active,on-hold",
    }
    required_prefetch = frozenset({"patient", "encounter"})

    def invoke(self, request: JsonDict, data: PrefetchData, env: ServiceEnv,
               now: datetime | None = None) -> CdsResponse:
        now = now or datetime.now(UTC)
        ctx = request["context"]
        pid, eid = ctx["patientId"], ctx["encounterId"]
        link = env.patient_link(pid, "Open the discharge checklist in DigitalFront")
        cards = [c for c in (self._pending(data, eid), self._follow_up(data, pid, eid, now),
                             self._med_rec(data, eid)) if c is not None]
        for c in cards:
            c.links.append(link)
        return CdsResponse(cards=cards)

    def _pending(self, data: PrefetchData, eid: str) -> Card | None:
        items: list[str] = []
        reported_orders: set[str] = set()
        for r in data.resources("reports", "DiagnosticReport"):
            for b in r.get("basedOn") or []:
                if (rid := ref_id(b, "ServiceRequest")) is not None:
                    reported_orders.add(rid)
            if r.get("status") in PENDING_REPORT:
                items.append(f"{concept_text(r.get('code')) or 'Report'} ({r['status']})")
        for o in data.resources("observations", "Observation"):
            if o.get("status") in PENDING_OBS:
                items.append(f"{concept_text(o.get('code')) or 'Result'} ({o['status']})")
        for s in data.resources("orders", "ServiceRequest"):
            if (s.get("status") == "active" and s.get("id") not in reported_orders
                    and ref_id(s.get("encounter"), "Encounter") == eid):
                items.append(f"{concept_text(s.get('code')) or 'Order'} (ordered, no result)")
        if not items:
            return None
        return Card(summary=f"{len(items)} result(s) pending at discharge", indicator="warning",
                    detail="Results not final yet; assign who follows them up:\n\n"
                           + "\n".join(f"- {i}" for i in items),
                    source_label=SOURCE,
                    override_reasons=[override_reason("followup-assigned", "Follow-up of results assigned"),
                                      override_reason("not-relevant", "Not relevant to discharge")])

    def _follow_up(self, data: PrefetchData, pid: str, eid: str, now: datetime) -> Card | None:
        for a in data.resources("appointments", "Appointment"):
            start = parse_dt(a.get("start"))
            if a.get("status") in ("proposed", "pending", "booked") and (start is None or start >= now):
                return None
        appt = {"resourceType": "Appointment", "id": new_id(), "status": "proposed",
                "description": "Post-discharge follow-up visit within 7 days",
                "serviceType": [{"coding": [{"system": "http://snomed.info/sct", "code": "390906007",
                                             "display": "Follow-up encounter"}]}],
                "requestedPeriod": [{"start": now.date().isoformat(),
                                     "end": (now + timedelta(days=7)).date().isoformat()}],
                "participant": [{"actor": {"reference": f"Patient/{pid}"}, "status": "needs-action"}],
                "supportingInformation": [{"reference": f"Encounter/{eid}"}]}
        return Card(summary="No follow-up appointment after discharge", indicator="warning",
                    detail=(f"No upcoming appointment is booked (checked {FOLLOW_UP_DAYS}-day horizon). "
                            "Early follow-up (within 7 days) reduces readmissions."),
                    source_label=SOURCE,
                    suggestions=[Suggestion("Propose a follow-up visit within 7 days",
                                            [Action("create", "Propose a follow-up appointment", appt)],
                                            is_recommended=True)],
                    selection_behavior="at-most-one",
                    override_reasons=[override_reason("followup-elsewhere", "Follow-up arranged elsewhere"),
                                      override_reason("no-followup-needed", "No follow-up needed")])

    def _med_rec(self, data: PrefetchData, eid: str) -> Card | None:
        meds = data.resources("medications", "MedicationRequest")
        inpatient = [m for m in meds if m.get("status") in ("active", "on-hold")
                     and ("inpatient" in _category(m) or (ref_id(m.get("encounter"), "Encounter") == eid
                                                          and "discharge" not in _category(m)
                                                          and "community" not in _category(m)))]
        has_discharge_list = any("discharge" in _category(m) for m in meds)
        if not inpatient:
            return None
        names = [concept_text(m.get("medicationCodeableConcept")) or "medication" for m in inpatient]
        actions = []
        for m in inpatient:
            stopped = {**m, "status": "stopped"}
            actions.append(Action("update", f"Stop inpatient order {concept_text(m.get('medicationCodeableConcept'))}",
                                  stopped))
        return Card(summary=f"Medication reconciliation: {len(inpatient)} inpatient order(s) still active",
                    indicator="warning",
                    detail=("Active inpatient medication orders must be stopped or converted to discharge "
                            "prescriptions:\n\n" + "\n".join(f"- {n}" for n in names)
                            + ("" if has_discharge_list else "\n\nNo discharge medication list exists yet.")),
                    source_label=SOURCE,
                    suggestions=[Suggestion("Stop the inpatient-only orders", actions)],
                    selection_behavior="at-most-one",
                    override_reasons=[override_reason("continue-at-home", "Will continue after discharge"),
                                      override_reason("reconciled-elsewhere", "Reconciled in another system")])


SERVICE = DischargeReadiness()
