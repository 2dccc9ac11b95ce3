from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from inference.features import (
    FEATURE_NAMES,
    feature_vector,
    lace_comorbidity_points,
    lace_length_points,
    readmission_features,
)
from inference.inprocess import InProcessClient
from inference.registry import DEFAULT_ROOT, ModelRegistry

CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpora" / "synthea-r4"


def enc(cls: str, start: str, end: str) -> dict:
    return {"resourceType": "Encounter", "class": {"code": cls}, "period": {"start": start, "end": end}}


def cond(code: str, display: str, onset: str, abated: str | None = None) -> dict:
    res = {"resourceType": "Condition", "code": {"coding": [{"system": "http://snomed.info/sct", "code": code,
                                                             "display": display}]},
           "onsetDateTime": onset}
    if abated:
        res["abatementDateTime"] = abated
    return res


@pytest.mark.parametrize("days, points", [(0.5, 0), (1, 1), (2, 2), (3, 3), (4, 4), (6.9, 4), (7, 5),
                                          (13, 5), (14, 7), (40, 7)])
def test_lace_length_points(days, points):
    assert lace_length_points(days) == points


@pytest.mark.parametrize("charlson, points", [(0, 0), (1, 1), (3, 3), (4, 5), (9, 5)])
def test_lace_comorbidity_points(charlson, points):
    assert lace_comorbidity_points(charlson) == points


def test_lace_of_a_worked_example():
    resources = {
        "Patient": [{"resourceType": "Patient", "birthDate": "1950-06-15"}],
        "Encounter": [
            enc("EMER", "2023-08-01T10:00:00Z", "2023-08-01T14:00:00Z"),  # > 6 months before
            enc("EMER", "2024-02-10T10:00:00Z", "2024-02-10T12:00:00Z"),
            enc("AMB", "2024-03-01T09:00:00Z", "2024-03-01T09:30:00Z"),
            enc("IMP", "2024-04-01T08:00:00Z", "2024-04-06T09:00:00Z"),  # index: 5 days, acute
        ],
        "Condition": [
            cond("88805009", "Chronic congestive heart failure", "2020-01-01T00:00:00Z"),
            cond("185086009", "Chronic obstructive bronchitis", "2021-01-01T00:00:00Z"),
            cond("444814009", "Viral sinusitis", "2022-01-01T00:00:00Z", abated="2022-01-20T00:00:00Z"),
            cond("254637007", "Non-small cell lung cancer", "2030-01-01T00:00:00Z"),  # future: ignored
        ],
        "MedicationRequest": [{"resourceType": "MedicationRequest", "authoredOn": "2024-01-01T00:00:00Z"}],
    }
    f = readmission_features(resources)
    assert list(f) == list(FEATURE_NAMES)
    assert f["age"] == 73.0
    assert f["los_days"] == pytest.approx(5.042, abs=1e-3)
    assert (f["lace_l"], f["lace_a"], f["lace_c"], f["lace_e"]) == (4.0, 3.0, 2.0, 1.0)  # 1 ED visit in 6 months
    assert f["lace_score"] == 10.0
    assert f["chf"] == f["copd"] == 1.0 and f["cancer"] == 0.0
    assert f["active_conditions"] == 2.0
    assert f["encounters_12m"] == 3.0 and f["inpatient_visits_12m"] == 0.0
    assert f["medication_requests_12m"] == 1.0
    # As of the AMB visit, the index is that visit: not acute, no length of stay, and the stay is not yet counted.
    early = readmission_features(resources, as_of=datetime(2024, 3, 1, 9, 30, tzinfo=UTC))
    assert (early["lace_l"], early["lace_a"]) == (0.0, 0.0)
    assert early["ed_visits_6m"] == 1.0


def test_empty_resources_give_zero_features():
    f = readmission_features({})
    assert set(f.values()) == {0.0}


@pytest.mark.skipif(not CORPUS.is_dir(), reason="needs ../shared/corpora/synthea-r4")
def test_shipped_model_ranks_synthea_readmissions():
    """The shipped ONNX model with features computed at serving time ranks real corpus labels."""
    pytest.importorskip("sklearn")
    from sklearn.metrics import roc_auc_score

    from inference.training.synthea import load_patients
    from inference.training.train_readmission import build_dataset

    x, y, _ = build_dataset(load_patients(CORPUS))
    probs = InProcessClient(DEFAULT_ROOT).infer  # batch through max_batch_size
    out = np.concatenate([probs("readmission_risk", {"features": x[i:i + 256]})["probabilities"][:, 1]
                          for i in range(0, len(x), 256)])
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert roc_auc_score(y, out) > 0.75  # fitted on these samples; cross-validated AUROC is in the card


def test_card_and_config_name_the_same_features():
    info = ModelRegistry(DEFAULT_ROOT).get("readmission_risk")
    assert info.card["features"] == list(FEATURE_NAMES)
    assert info.config.parameters["feature_names"].split(",") == list(FEATURE_NAMES)
    assert info.config.inputs[0].dims == (len(FEATURE_NAMES),)
    assert feature_vector(readmission_features({})) == [0.0] * len(FEATURE_NAMES)
