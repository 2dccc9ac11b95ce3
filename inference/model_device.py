"""The Device that names a model and its version in the FHIR an AI output is written as.

Every AI output the server writes or suggests carries it: imaging findings reference a stored Device (and a
Provenance whose agent it is), a readmission RiskAssessment suggested in a CDS card carries it contained, as
its performer. One definition, so both name a model the same way (identifier ``name:version``).
"""

from __future__ import annotations

from typing import Any

MODEL_ID_SYSTEM = "urn:digitalfront:model"


def model_device(name: str, version: str, demo: bool) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Device", "status": "active",
        "identifier": [{"system": MODEL_ID_SYSTEM, "value": f"{name}:{version}"}],
        "deviceName": [{"name": name, "type": "model-name"}],
        "type": {"text": "AI/ML inference model"},
        "version": [{"value": version}],
    }
    if demo:
        res["note"] = [{"text": "Demo model trained on synthetic data; not for clinical use."}]
    return res
