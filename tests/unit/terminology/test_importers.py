"""Native importers over small fixtures written in the exact release formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from terminology.cli import terminology
from terminology.service import TerminologyService

FIX = Path(__file__).with_name("fixtures")
SCT = "http://snomed.info/sct"


def test_snomed_rf2(svc):
    from terminology.importers.snomed import load_snomed

    counts = load_snomed(svc.engine, FIX / "snomed")
    svc.invalidate()
    assert counts["concepts"] == 10
    r = svc.lookup(SCT, "44054006")
    assert r["display"] == "Diabetes mellitus type 2"  # FSN without the semantic tag
    assert {d["value"] for d in r["designation"]} == {"Diabetes mellitus type 2 (disorder)",
                                                      "Type 2 diabetes mellitus"}  # inactive NIDDM dropped
    assert svc.subsumes(SCT, "404684003", "44054006") == "subsumes"
    # the inactive is-a row and the finding-site attribute are not hierarchy
    assert svc.codes_above(SCT, "44054006") == {"44054006", "73211009", "362969004", "64572001",
                                                "404684003", "138875005"}
    assert svc.subsumes(SCT, "80891009", "73211009") == "not-subsumed"
    assert svc.lookup(SCT, "190330002")["inactive"] is True
    # implicit ECL-free value set and membership for bindings
    vs = SCT + "?fhir_vs=isa/73211009"
    codes = [c["code"] for c in svc.expand(vs)["expansion"]["contains"]]
    assert codes == ["73211009", "44054006", "46635009"]  # inactive 190330002 left out
    assert svc.in_value_set(vs, SCT, "46635009") is True
    assert svc.in_value_set(vs, SCT, "80891009") is False


def test_loinc(svc):
    from terminology.importers.loinc import load_loinc

    load_loinc(svc.engine, FIX / "loinc" / "Loinc.csv", FIX / "loinc" / "MultiAxialHierarchy.csv", "2.77")
    svc.invalidate()
    r = svc.lookup("http://loinc.org", "2345-7")
    assert r["display"] == "Glucose [Mass/volume] in Serum or Plasma"
    assert {"code": "SCALE_TYP", "type": "string", "value": "Qn", "system": None} in r["property"]
    assert svc.lookup("http://loinc.org", "1558-6")["inactive"] is True
    assert svc.codes_below("http://loinc.org", "LP14635-4") == {"LP14635-4", "2345-7", "2339-0"}
    assert svc.lookup("http://loinc.org", "LP7786-9")["display"] == "Chemistry"
    vs = {"resourceType": "ValueSet", "url": "http://example.org/vs/chem-ser", "compose": {"include": [
        {"system": "http://loinc.org", "filter": [{"property": "CLASS", "op": "=", "value": "CHEM"},
                                                  {"property": "SYSTEM", "op": "=", "value": "Ser/Plas"}]}]}}
    assert [c["code"] for c in svc.expand(vs)["expansion"]["contains"]] == ["2345-7"]


def test_rxnorm(svc):
    from terminology.importers.rxnorm import load_rxnorm

    load_rxnorm(svc.engine, FIX / "rxnorm")
    svc.invalidate()
    rx = "http://www.nlm.nih.gov/research/umls/rxnorm"
    r = svc.lookup(rx, "198440")
    assert r["display"] == "acetaminophen 500 MG Oral Tablet"
    assert [d["value"] for d in r["designation"]] == ["APAP 500 MG Oral Tablet"]
    assert {"code": "has_ingredient", "type": "code", "value": "161", "system": None} in r["property"]
    assert svc.subsumes(rx, "198440", "209459") == "subsumes"
    assert svc.lookup(rx, "315266")["inactive"] is True  # SUPPRESS=O
    vs = {"resourceType": "ValueSet", "url": "http://example.org/vs/apap", "compose": {"include": [
        {"system": rx, "filter": [{"property": "has_ingredient", "op": "=", "value": "161"}]}]}}
    assert [c["code"] for c in svc.expand(vs)["expansion"]["contains"]] == ["198440"]


def test_icd10cm_cli(tmp_path):
    db = f"sqlite:///{tmp_path / 'tx.db'}"
    res = CliRunner().invoke(terminology, ["load-icd10cm", str(FIX / "icd10cm" / "icd10cm_order_2024.txt"),
                                           "--database", db, "--version", "2024"])
    assert res.exit_code == 0, res.output
    svc = TerminologyService(db)
    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    assert svc.lookup(icd, "E11.65")["display"] == "Type 2 diabetes mellitus with hyperglycemia"
    assert svc.codes_above(icd, "E11.65") == {"E11.65", "E11.6", "E11"}
    assert svc.codes_below(icd, "S72.00") == {"S72.00", "S72.001", "S72.001A"}
    assert svc.lookup(icd, "E11")["abstract"] is True  # a category header, not billable
    listed = CliRunner().invoke(terminology, ["list", "--database", db])
    assert "http://hl7.org/fhir/sid/icd-10-cm|2024" in listed.output


def test_cli_load_package_and_bad_input(tmp_path, monkeypatch):
    from terminology.packages import shared_package

    monkeypatch.setenv("FHIR_PACKAGE_CACHE", str(tmp_path / "cache"))
    db = f"sqlite:///{tmp_path / 'tx.db'}"
    pkg = shared_package("hl7.fhir.r4.expansions")
    if pkg is not None:
        res = CliRunner().invoke(terminology, ["load", str(pkg), "--database", db])
        assert res.exit_code == 0, res.output
        assert "'ValueSet': 553" in res.output
    res = CliRunner().invoke(terminology, ["load", "no.such.package#1.0", "--database", db])
    assert res.exit_code == 1 and "FHIR package not found" in res.output
    res = CliRunner().invoke(terminology, ["load-snomed", str(tmp_path), "--database", db])
    assert res.exit_code == 1 and "no sct2_Concept_" in res.output


def test_cli_loads_the_tho_package_and_its_content_answers(tmp_path, monkeypatch):
    """hl7.terminology.r4 (THO, ../shared) through `digitalfront terminology load`: progress is reported while
    it streams, and its code systems and value sets answer $validate-code/$expand (v3 RoleCode, the target of
    the v2-to-FHIR IG's Relationship map, is a THO code system)."""
    from terminology.packages import shared_package
    from terminology.service import TerminologyService

    pkg = shared_package("hl7.terminology.r4")
    if pkg is None:
        pytest.skip("../shared/fhir-packages/hl7.terminology.r4 not available")
    monkeypatch.setenv("FHIR_PACKAGE_CACHE", str(tmp_path / "cache"))
    db = f"sqlite:///{tmp_path / 'tho.db'}"
    res = CliRunner().invoke(terminology, ["load", str(pkg), "--database", db])
    assert res.exit_code == 0, res.output
    assert "resources:" in res.output  # the progress lines
    counts = res.output.strip().splitlines()[-1]
    assert "'CodeSystem': " in counts and "'ValueSet': " in counts
    svc = TerminologyService(db)
    role = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
    assert svc.validate_code_in_system(role, "ONESELF")["result"] is True
    assert svc.validate_code_in_system(role, "NOT-A-ROLE")["result"] is False
    looked = svc.lookup(role, "ONESELF")
    assert (looked["display"], looked["version"]) == ("self", "3.0.0")  # THO's, not the core package's
    expansion = svc.expand("http://terminology.hl7.org/ValueSet/v3-xActClassCareProvisionObservation")
    assert expansion["expansion"].get("contains")


@pytest.mark.parametrize(("command", "args", "system", "code"), [
    ("load-loinc", ["loinc/Loinc.csv", "--hierarchy", "loinc/MultiAxialHierarchy.csv", "--version", "2.77"],
     "http://loinc.org", None),
    ("load-snomed", ["snomed"], SCT, "44054006"),
    ("load-rxnorm", ["rxnorm"], "http://www.nlm.nih.gov/research/umls/rxnorm", None),
])
def test_importer_commands_load_the_release_files(tmp_path, command, args, system, code):
    """The `digitalfront terminology load-*` commands as an operator runs them on the release files."""
    db = f"sqlite:///{tmp_path / 'imp.db'}"
    argv = [command] + [str(FIX / a) if "/" in a or a in ("snomed", "rxnorm") else a for a in args]
    res = CliRunner().invoke(terminology, [*argv, "--database", db])
    assert res.exit_code == 0, res.output
    *progress, summary = res.output.strip().splitlines()
    assert progress and all("closure" in line for line in progress)  # progress while the closure is built
    assert summary.startswith("loaded ") and "'concepts': " in summary
    svc = TerminologyService(db)
    known = svc.index.code_system(system, None)
    assert known is not None and known.content == "complete"
    if code:
        assert svc.validate_code_in_system(system, code)["result"] is True
