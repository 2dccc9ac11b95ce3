from __future__ import annotations

import shutil

import pytest

from inference.registry import DEFAULT_ROOT, ModelRegistry, list_models


def test_lists_shipped_models_with_cards():
    models = {m["name"]: m for m in list_models()}
    assert {"imaging_cnn", "readmission_risk"} <= set(models)
    on_disk = {p.parent.name for p in DEFAULT_ROOT.glob("*/config.pbtxt")}
    assert set(models) == on_disk  # includes nlp_pipeline once the NLP package ships it
    img = models["imaging_cnn"]
    assert img["versions"] == ["1"] and img["latest"] == "1"
    assert img["inputs"] == [{"name": "image__0", "datatype": "FP32", "shape": [1, 64, 64]}]
    assert img["demo_model"] is True
    card = img["card"]
    for key in ("task", "training_data", "intended_use", "metrics", "limitations"):
        assert card[key], key
    assert set(img["deployment_configs"]) == {"gpu", "gpu_libtorch"}
    assert models["readmission_risk"]["card"]["metrics"]["n_patients"] == 74


def test_versions_and_policy(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(DEFAULT_ROOT / "readmission_risk", root / "readmission_risk")
    shutil.copytree(root / "readmission_risk" / "1", root / "readmission_risk" / "3")
    reg = ModelRegistry(root)
    info = reg.get("readmission_risk")
    assert info.versions == (1, 3)
    assert info.served_versions == (3,)  # latest { num_versions: 1 }
    assert info.resolve_version(None) == 3 and info.resolve_version("1") == 1
    with pytest.raises(LookupError, match="no version 2"):
        info.resolve_version("2")
    with pytest.raises(LookupError, match="not a number"):
        info.resolve_version("abc")
    with pytest.raises(LookupError, match="unknown model"):
        reg.get("nope")


def test_a_broken_model_is_reported_and_the_others_still_served(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(DEFAULT_ROOT / "readmission_risk", root / "readmission_risk")
    shutil.copytree(DEFAULT_ROOT / "readmission_risk", root / "renamed")
    (root / "garbled").mkdir()
    (root / "garbled" / "config.pbtxt").write_text("name: \"garbled\" input [ {")
    reg = ModelRegistry(root)
    assert list(reg.models()) == ["readmission_risk"]
    assert "differs from folder" in reg.errors["renamed"]
    assert "does not parse" in reg.errors["garbled"]
