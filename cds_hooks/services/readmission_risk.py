"""patient-view readmission-risk: LACE (transparent baseline) plus the project's ML model.

The model (``readmission_risk`` in the inference layer) is optional: without the
inference package or model, the LACE card still appears. Contributing factors of
the model come from one batched occlusion pass (each feature set to 0 in turn).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cds_hooks.cards import Action, Card, CdsResponse, Suggestion, new_id, override_reason
from cds_hooks.lace import Lace, lace
from cds_hooks.prefetch import PrefetchData
from cds_hooks.registry import CdsService, ServiceEnv

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
MODEL = "readmission_risk"
MODEL_HIGH = 0.30  # probability above which the model alone raises a warning
_clients: dict[int, Any] = {}
_lock = threading.Lock()
RISK_CS = "http://terminology.hl7.org/CodeSystem/risk-probability"


def model_client(settings: Any) -> Any | None:
    """The inference layer's ModelClient, once per settings object; None when not installed."""
    key = id(settings)
    with _lock:
        if key not in _clients:
            try:
                from inference import get_model_client

                _clients[key] = get_model_client(settings)
            except Exception as exc:  # noqa: BLE001 - missing package or model: LACE only
                log.info("readmission model unavailable: %s", exc)
                _clients[key] = None
        return _clients[key]


@dataclass
class Prediction:
    probability: float
    top: list[tuple[str, float]]  # (feature, contribution), largest first
    version: str  # the model version that answered (pinned, not "latest at the server")
    demo: bool


def model_prediction(resources: dict[str, list[JsonDict]], now: datetime, settings: Any) -> Prediction | None:
    """The model's probability and its largest contributions, or None when the model cannot answer."""
    client = model_client(settings)
    if client is None:
        return None
    try:
        import numpy as np

        from inference import model_repository
        from inference.features import FEATURE_NAMES, feature_vector, readmission_features
        from inference.registry import registry

        info = registry(model_repository(settings)).get(MODEL)
        version = str(info.resolve_version(None))
        feats = readmission_features(resources, as_of=now)
        base = np.array(feature_vector(feats), dtype=np.float32)
        batch = np.repeat(base[None, :], len(FEATURE_NAMES) + 1, axis=0)
        for i in range(len(FEATURE_NAMES)):
            batch[i + 1, i] = 0.0
        probs = client.infer(MODEL, {"features": batch}, version=version)["probabilities"]
        p = float(probs[0][1])
        contrib = [(name, p - float(probs[i + 1][1])) for i, name in enumerate(FEATURE_NAMES)
                   if feats[name] != 0.0]
        contrib.sort(key=lambda c: -c[1])
        return Prediction(p, [c for c in contrib if c[1] > 0.005][:3], version,
                          bool(info.card.get("demo_model", False)))
    except Exception as exc:  # noqa: BLE001 - inference errors degrade to LACE
        log.warning("readmission model failed: %s", exc)
        return None


def _factors(score: Lace) -> list[str]:
    parts = [(score.length, f"L {score.length}: length of stay {score.los_days} d"),
             (score.acuity, f"A {score.acuity}: {'emergent' if score.acuity else 'elective'} admission"),
             (score.comorbidity, f"C {score.comorbidity}: Charlson {score.charlson}"
              + (f" ({', '.join(score.comorbidities)})" if score.comorbidities else "")),
             (score.emergency, f"E {score.emergency}: {score.ed_visits} ED visit(s) in 6 months")]
    return [t for _, t in sorted(parts, key=lambda p: -p[0])]


class ReadmissionRisk(CdsService):
    id = "readmission-risk"
    hook = "patient-view"
    title = "30-day readmission risk (LACE + ML)"
    description = ("LACE index for the current or recent inpatient stay with the project's demo ML model "
                   "(served by the inference layer), top contributing factors and a RiskAssessment suggestion.")
    prefetch = {
        "patient": "Patient/{{context.patientId}}",
        "encounters": "Encounter?patient={{context.patientId}}&_count=500",
        "conditions": "Condition?patient={{context.patientId}}&_count=500",
        "medications": "MedicationRequest?patient={{context.patientId}}&_count=500",
    }
    required_prefetch = frozenset({"patient", "encounters"})

    def warm(self, settings: Any) -> None:
        model_prediction({}, datetime.now(UTC), settings)  # opens the ONNX session

    def invoke(self, request: JsonDict, data: PrefetchData, env: ServiceEnv,
               now: datetime | None = None) -> CdsResponse:
        now = now or datetime.now(UTC)
        ctx = request["context"]
        pid = ctx["patientId"]
        encounters = data.resources("encounters", "Encounter")
        conditions = data.resources("conditions", "Condition")
        score = lace(encounters, conditions, now, ctx.get("encounterId"))
        if score is None:
            return CdsResponse()
        patient = data.resource("patient")
        resources = {"Patient": [patient] if patient else [], "Encounter": encounters,
                     "Condition": conditions, "MedicationRequest": data.resources("medications")}
        ml = model_prediction(resources, now, env.settings)
        high = score.risk == "high" or (ml is not None and ml.probability >= MODEL_HIGH)
        if score.risk == "low" and not high:
            return CdsResponse()
        detail = (f"**LACE {score.score}** ({score.risk} risk; ≥10 is high)\n\n"
                  + "\n".join(f"- {f}" for f in _factors(score)))
        summary = f"Readmission risk {'high' if high else 'moderate'}: LACE {score.score}"
        if ml is not None:
            summary += f", model {ml.probability:.0%}"
            detail += (f"\n\n**ML model: {ml.probability:.0%}** 30-day readmission probability ({MODEL} "
                       f"version {ml.version}{', demo model, not clinically validated' if ml.demo else ''}). "
                       "Top contributing factors: "
                       + (", ".join(f"{n} (+{d:.0%})" for n, d in ml.top) or "none stand out"))
        else:
            detail += "\n\nML model not available: LACE only."
        stay = score.index_encounter or {}
        assessment: JsonDict = {
            "resourceType": "RiskAssessment", "id": new_id(), "status": "preliminary",
            "subject": {"reference": f"Patient/{pid}"},
            "occurrenceDateTime": now.isoformat(timespec="seconds"),
            "method": {"text": "LACE index" + (f" + {MODEL} model version {ml.version}" if ml else "")},
            "prediction": [{
                "outcome": {"text": "Readmission within 30 days"},
                "qualitativeRisk": {"coding": [{"system": RISK_CS, "code": "high" if high else "moderate"}]},
                "whenRange": {"high": {"value": 30, "unit": "days", "system": "http://unitsofmeasure.org",
                                       "code": "d"}},
                **({"probabilityDecimal": round(ml.probability, 4)} if ml else {}),
            }],
            "note": [{"text": f"LACE {score.score}: " + "; ".join(_factors(score))}],
        }
        if stay.get("id"):
            assessment["encounter"] = {"reference": f"Encounter/{stay['id']}"}
        if ml is not None:  # the model and version that computed the probability travel with it
            from inference.model_device import model_device

            assessment["contained"] = [{**model_device(MODEL, ml.version, ml.demo), "id": "model"}]
            assessment["performer"] = {"reference": "#model", "display": f"{MODEL} version {ml.version}"}
        card = Card(summary=summary, indicator="warning" if high else "info", detail=detail,
                    source_label="DigitalFront readmission risk (LACE, van Walraven 2010; demo ML model)",
                    source_url="https://doi.org/10.1503/cmaj.091117",
                    suggestions=[Suggestion("Record this readmission risk assessment",
                                            [Action("create", "Create a RiskAssessment", assessment)],
                                            is_recommended=high)],
                    selection_behavior="at-most-one",
                    override_reasons=[override_reason("already-addressed", "Transition plan already in place"),
                                      override_reason("disagree", "Disagree with the risk estimate")],
                    links=[env.patient_link(pid, "Plan the transition of care in DigitalFront")])
        return CdsResponse(cards=[card])


SERVICE = ReadmissionRisk()
