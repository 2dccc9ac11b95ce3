"""The shipped type model is exactly what scripts/build_definitions.py generates."""

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from fhir_server.definitions import get_model
from terminology.packages import shared_package

ROOT = Path(__file__).resolve().parents[4]


def _load_script():
    spec = importlib.util.spec_from_file_location("build_definitions", ROOT / "scripts" / "build_definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_extract_matches_generator():
    pkg = shared_package("hl7.fhir.r4.examples")
    if pkg is None:
        pytest.skip("../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz not available")
    script = _load_script()
    generated = script.build(pkg)
    data_dir = ROOT / "fhir_server" / "definitions" / "data"
    assert sorted(generated) == sorted(p.name for p in data_dir.glob("*.json.gz"))
    for name, doc in generated.items():
        shipped = json.loads(gzip.decompress((data_dir / name).read_bytes()))
        assert shipped == json.loads(json.dumps(doc)), f"{name} is stale: run scripts/build_definitions.py"
        assert script.encode(doc) == (data_dir / name).read_bytes()  # deterministic bytes too


def test_model_covers_r4():
    model = get_model()
    types = model.resource_types()
    assert len(types) == 146  # every R4 resource, R4-only ones included
    for r4_only in ("MedicinalProduct", "EffectEvidenceSynthesis", "DeviceUseStatement"):
        assert r4_only in types
    obs = model.node("Observation")
    el, tc = obs.resolve("valueQuantity")
    assert el.path == "Observation.value[x]" and tc == "Quantity" and el.summary and el.max == 1
    assert obs.resolve("value") is None
    status, _ = obs.resolve("status")
    assert status.min == 1 and status.modifier and status.binding_strength == "required"
    codes = model.value_set_codes(status.value_set)
    assert codes == {"http://hl7.org/fhir/observation-status": sorted(
        ["registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
         "unknown"])}
    item, _ = model.node("Questionnaire.item").resolve("item")
    assert item.child_node("BackboneElement") == "Questionnaire.item"
    assert model.types["date"].regex and model.is_primitive("date") and not model.is_primitive("Period")
    assert model.node("Extension").resolve("url")[0].xml_attr
