"""The NLP pipeline packaged as a Triton python-backend model (inference/model_repository/nlp_pipeline),
served by the in-process backend through the pb_shim: same contract and outputs as ClinicalNlp itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.client import InferenceError, InvalidInput
from inference.inprocess import InProcessClient
from inference.registry import DEFAULT_ROOT, list_models
from nlp.eval import RECORDED_SCORES, load_corpus
from nlp.fhir_mapping import text_ref, to_bundle
from nlp.pipeline import ClinicalNlp

NOTE = (
    "HPI: 58 yo M with history of hypertension presents with chest pain. Denies shortness of breath.\n"
    "Allergies: penicillin (hives).\n"
    "Family History: Mother with breast cancer.\n"
    "Medications: metformin 500 mg BID. Will start atorvastatin.\n"
    "Plan: return if fever. Cannot rule out pneumonia. Café-au-lait spots noted.\n"
)


def notes() -> list[str]:
    """Every 25th sentence of the NLP evaluation corpus (all three files), a sectioned note, an empty note."""
    corpus = [ex.text for ex in load_corpus()]
    return [*corpus[::25], NOTE, ""]


def _batch(texts: list[str]) -> np.ndarray:
    return np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)


def _rows(arr: np.ndarray) -> list:
    assert arr.dtype == np.object_ and arr.ndim == 2 and arr.shape[1] == 1
    return [json.loads(v.decode("utf-8")) for v in arr[:, 0]]


def _without_recorded(bundle: dict) -> dict:
    """The extraction timestamp (Provenance.recorded, recordedDate...) differs between runs: mask it."""
    stamps = {e["resource"]["recorded"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"}
    text = json.dumps(bundle)
    for stamp in stamps:
        text = text.replace(json.dumps(stamp), '"<recorded>"')
    return json.loads(text)


@pytest.fixture(scope="module")
def client() -> InProcessClient:
    return InProcessClient()


@pytest.fixture(scope="module")
def direct() -> ClinicalNlp:
    """A pipeline of its own, not the shared one the model uses."""
    return ClinicalNlp()


def test_repository_lists_the_model_with_its_card():
    info = {m["name"]: m for m in list_models()}["nlp_pipeline"]
    assert info["backend"] == "python" and info["latest"] == "1"
    assert [(t["name"], t["datatype"]) for t in info["inputs"]] == [("text", "BYTES")]
    assert [(t["name"], t["datatype"]) for t in info["outputs"]] == [("mentions", "BYTES"), ("bundle", "BYTES")]
    card = info["card"]
    assert info["demo_model"] is True and "Not validated for clinical use" in card["intended_use"]
    assert card["name"] == "nlp_pipeline"


def test_card_metrics_are_the_recorded_evaluation():
    card = json.loads((DEFAULT_ROOT / "nlp_pipeline" / "model_card.json").read_text())
    recorded = json.loads(RECORDED_SCORES.read_text())["ours"]
    assert card["metrics"] == {f"{k}_f1_dev": v["f1"] for k, v in recorded.items()}
    ruleset = json.loads((DEFAULT_ROOT.parents[1] / "nlp" / "rules" / "ruleset.json").read_text())
    assert card["ruleset"] == f"{ruleset['name']}@{ruleset['version']}"


def test_mentions_equal_the_pipeline_called_directly(client, direct):
    texts = notes()
    assert len(texts) <= 16  # max_batch_size
    out = client.infer("nlp_pipeline", {"text": _batch(texts)})
    got = _rows(out["mentions"])
    want = [json.loads(json.dumps([m.to_dict() for m in direct.extract(t)])) for t in texts]
    assert got == want
    assert sum(len(g) for g in got) > 20  # the sample really exercises the rules
    first = next(m for m in got[-2] if m["concept_id"] == "chest_pain")
    assert NOTE[first["start"]:first["end"]] == first["text"]  # offsets index the note sent


def test_bundle_equals_to_bundle_of_the_same_mentions(client, direct):
    out = client.infer("nlp_pipeline", {"text": _batch([NOTE])})
    (bundle,) = _rows(out["bundle"])
    want = to_bundle(direct.extract(NOTE), "Patient/unknown", text_ref(NOTE), text=NOTE)
    assert _without_recorded(bundle) == _without_recorded(want)
    types = sorted({e["resource"]["resourceType"] for e in bundle["entry"]})
    assert {"AllergyIntolerance", "Condition", "FamilyMemberHistory", "Provenance"} <= set(types)


def test_only_requested_outputs_are_returned(client):
    out = client.infer("nlp_pipeline", {"text": _batch(["Denies chest pain."])}, outputs=["mentions"])
    assert list(out) == ["mentions"]
    (mentions,) = _rows(out["mentions"])
    assert [(m["concept_id"], m["negated"]) for m in mentions] == [("chest_pain", True)]


def test_str_rows_are_accepted_like_bytes(client):
    as_str = client.infer("nlp_pipeline", {"text": np.array([["History of asthma."]], dtype=np.object_)},
                          outputs=["mentions"])
    as_bytes = client.infer("nlp_pipeline", {"text": _batch(["History of asthma."])}, outputs=["mentions"])
    assert _rows(as_str["mentions"]) == _rows(as_bytes["mentions"])


def test_config_contract_is_enforced(client):
    with pytest.raises(InvalidInput, match="batch 17"):
        client.infer("nlp_pipeline", {"text": _batch(["cough"] * 17)})
    with pytest.raises(InvalidInput, match="unexpected input"):
        client.infer("nlp_pipeline", {"note": _batch(["cough"])})
    with pytest.raises(InvalidInput, match="shape"):
        client.infer("nlp_pipeline", {"text": np.array([b"cough"], dtype=np.object_)})
    with pytest.raises(InvalidInput, match="unknown output"):
        client.infer("nlp_pipeline", {"text": _batch(["cough"])}, outputs=["entities"])


def test_invalid_utf8_is_an_error_response_not_a_crash(client):
    with pytest.raises(InferenceError, match="utf-8"):
        client.infer("nlp_pipeline", {"text": np.array([[b"chest pain \xff\xfe"]], dtype=np.object_)})
    out = client.infer("nlp_pipeline", {"text": _batch(["Fever."])}, outputs=["mentions"])  # still serving
    assert _rows(out["mentions"])[0][0]["concept_id"] == "fever"


def test_metadata_and_readiness(client):
    assert client.ready("nlp_pipeline") and client.ready("nlp_pipeline", "1")
    assert not client.ready("nlp_pipeline", "2")
    meta = client.metadata("nlp_pipeline")
    assert meta["platform"] == "python" and meta["versions"] == ["1"]


_BOOTSTRAP = """
import importlib.util, json, sys
from pathlib import Path
model_py = Path(sys.argv[1])
try:
    import nlp  # noqa: F401
    sys.exit("nlp was importable before the bootstrap: the test proves nothing")
except ImportError:
    pass
spec = importlib.util.spec_from_file_location("nlp_model", model_py)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
try:
    module.ensure_importable(model_py.parents[1])
except RuntimeError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
import medspacy
import nlp.pipeline
print(json.dumps({"nlp": nlp.pipeline.__file__, "medspacy": medspacy.__file__}))
"""


def _foreign_python(tmp_path, venv: str) -> dict:
    """Run the model's bootstrap in a bare interpreter (like Triton's stub): no site-packages, only numpy
    and a triton_python_backend_utils module on its path."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import inference.pb_shim

    path_dir = tmp_path / "foreign"
    path_dir.mkdir(exist_ok=True)
    for link, target in (("numpy", Path(np.__file__).parent),
                         ("triton_python_backend_utils.py", Path(inference.pb_shim.__file__))):
        if not (path_dir / link).exists():
            (path_dir / link).symlink_to(target)
    script = path_dir / "bootstrap.py"
    script.write_text(_BOOTSTRAP)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(path_dir), "DIGITALFRONT_VENV": venv}
    base = getattr(sys, "_base_executable", sys.executable)
    out = subprocess.run([base, "-S", str(script), str(DEFAULT_ROOT / "nlp_pipeline" / "1" / "model.py")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_bootstrap_makes_nlp_importable_in_a_foreign_interpreter(tmp_path):
    import sys
    from pathlib import Path

    got = _foreign_python(tmp_path, sys.prefix)  # our virtual environment
    root = DEFAULT_ROOT.parents[1]
    assert Path(got["nlp"]).resolve() == (root / "nlp" / "pipeline.py").resolve()  # found by walking up
    assert Path(got["medspacy"]).resolve().is_relative_to(Path(sys.prefix).resolve())


def test_bootstrap_says_why_when_it_cannot(tmp_path):
    got = _foreign_python(tmp_path, str(tmp_path / "no-such-venv"))
    assert "cannot import nlp/medspacy" in got["error"] and "DIGITALFRONT_VENV" in got["error"]
