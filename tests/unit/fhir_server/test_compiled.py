"""The compiled (mypyc) hot modules: used only when current, and they compute what the pure-Python ones do."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fhir_server import compiled
from tests.conftest import shared_path

REPO = Path(__file__).resolve().parents[3]


def fake_build(folder: Path) -> dict:
    """A manifest (and empty module files) that describes the current sources."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    modules = {m: {"file": m.replace(".", "/") + suffix} for m in compiled.MODULES}
    manifest = {"ext_suffix": suffix, "modules": modules, "shared": {"x__mypyc": {"file": "x__mypyc" + suffix}},
                "sources": compiled.package_sources()}
    for entry in [*modules.values(), *manifest["shared"].values()]:
        (folder / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        (folder / entry["file"]).write_bytes(b"")
    (folder / compiled.MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_a_current_build_is_usable_and_a_stale_one_is_not(tmp_path: Path) -> None:
    assert compiled.usable(tmp_path) is None  # no build at all
    manifest = fake_build(tmp_path)
    files = compiled.usable(tmp_path)
    assert files is not None and set(files) == {*compiled.MODULES, "x__mypyc"}

    for path in (compiled.source_of(compiled.MODULES[0]).relative_to(compiled.SOURCE_ROOT).as_posix(),
                 "fhir_server/router.py"):  # a compiled module, or a module the build type-checked it against
        edited = dict(manifest, sources={**manifest["sources"], path: "0" * 64})
        (tmp_path / compiled.MANIFEST).write_text(json.dumps(edited))
        assert compiled.usable(tmp_path) is None  # changed since the build: never shadow it
    fewer_files = dict(manifest, sources={p: h for p, h in manifest["sources"].items() if p != "interfaces/ack.py"})
    (tmp_path / compiled.MANIFEST).write_text(json.dumps(fewer_files))
    assert compiled.usable(tmp_path) is None  # a module added since the build

    (tmp_path / compiled.MANIFEST).write_text(json.dumps(dict(manifest, ext_suffix=".cpython-39-x.so")))
    assert compiled.usable(tmp_path) is None  # another interpreter's build

    fewer = dict(manifest, modules={m: e for m, e in manifest["modules"].items() if m != compiled.MODULES[-1]})
    (tmp_path / compiled.MANIFEST).write_text(json.dumps(fewer))
    assert compiled.usable(tmp_path) is None  # built from another module list


# Runs in a fresh interpreter: every R4 example through validation and index extraction, the IG's v2
# sample messages and a feed of ADT/ORU messages through mapping and preparing; one digest per input.
DRIVER = r"""
import dataclasses, hashlib, json, random, sys, tarfile, uuid
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
ids = random.Random(1)  # the mapping's urn:uuid placeholders (and the index rows made from them): the same each run
uuid.uuid4 = lambda: uuid.UUID(int=ids.getrandbits(128), version=4)
import fhir_server
from fhir_server import compiled
from fhir_server.interactions.prepared import prepare_bundle
from fhir_server.search.extract import Extractor
from fhir_server.search.registry import SearchParamRegistry
from fhir_server.validation import validate_resource
import fhir_server.search.extract, fhir_server.validation.structure, interfaces.er7
from hl7_bench import make_messages
from interfaces.parsing import parse
from interfaces.prepare import map_message
from tests.unit.interfaces.hl7_testkit import ig_messages

def fields_of(obj):  # (vars() does not work on a compiled dataclass)
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}

def digest(obj):
    text = json.dumps(obj, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()

loaded = [compiled.loaded_compiled(m) for m in (fhir_server.search.extract, fhir_server.validation.structure,
                                                  interfaces.er7)]
extractor = Extractor(SearchParamRegistry())
out = {"compiled": loaded, "digests": {}}
with tarfile.open(sys.argv[2], "r:gz") as tar:
    for m in tar.getmembers():
        name = m.name.rsplit("/", 1)[-1]
        if m.isfile() and name.endswith(".json") and name not in ("package.json", ".index.json"):
            res = json.load(tar.extractfile(m))
            if isinstance(res, dict) and res.get("resourceType"):
                issues = [(i.severity, i.code, i.diagnostics, i.expression) for i in validate_resource(res)]
                rows = fields_of(extractor.extract(res)) if res.get("id") else None
                out["digests"][name] = digest([issues, rows])
messages = [m.encode() for m in ig_messages().values()] + make_messages(60, seed=5)
for i, raw in enumerate(messages):
    msg, header = parse(raw)
    mapped = map_message(msg, header, 7)
    for e in (mapped.bundle or {}).get("entry", []):  # the mapping's clock
        if e["resource"]["resourceType"] == "Provenance":
            e["resource"]["recorded"] = "2024-05-06T07:08:09+00:00"
    prepared = prepare_bundle(mapped.bundle, extractor) if mapped.bundle is not None else None
    entries = [e and {**fields_of(e), "index": e.index and fields_of(e.index), "lookups": sorted(map(repr, e.lookups))}
               for e in prepared.entries] \
        if prepared else None
    out["digests"][f"v2 message {i}"] = digest([mapped.bundle, mapped.error, mapped.unsupported, entries])
print(json.dumps(out))
"""


def run_driver(pure: bool) -> dict:
    env = {**os.environ, "DIGITALFRONT_PURE_PYTHON": "1" if pure else ""}
    done = subprocess.run([sys.executable, "-c", DRIVER, str(REPO),
                           str(shared_path("fhir-packages", "hl7.fhir.r4.examples-4.0.1.tgz"))],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(compiled.usable(compiled.default_dir()) is None,
                    reason="no current compiled build (make builds it with scripts/build_compiled.py; it needs a "
                           "C compiler): the pure-Python modules are what runs")
def test_compiled_modules_compute_what_the_python_ones_do() -> None:
    fast, pure = run_driver(pure=False), run_driver(pure=True)
    assert fast["compiled"] == [True, True, True]
    assert pure["compiled"] == [False, False, False]
    assert len(pure["digests"]) > 2500
    differ = [k for k, v in pure["digests"].items() if fast["digests"].get(k) != v]
    assert not differ, f"{len(differ)} inputs differ, e.g. {differ[:5]}"
