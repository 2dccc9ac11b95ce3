"""$expand agreement with the reference expansions published with FHIR R4 (hl7.fhir.r4.expansions)."""

from __future__ import annotations

import pytest

from terminology.errors import UnknownCodeSystem
from terminology.packages import iter_resources, shared_package

TARGET = 0.98


def _flat(contains):
    for c in contains:
        if "code" in c:
            yield (c["system"], c["code"])
        yield from _flat(c.get("contains", []))


def test_expand_agrees_with_reference_expansions(core_svc):
    pkg = shared_package("hl7.fhir.r4.expansions")
    if pkg is None:
        pytest.skip("../shared/fhir-packages/hl7.fhir.r4.expansions-*.tgz not available")
    compared = agreed = external = truncated = 0
    disagreements = []
    for vs in iter_resources(pkg, {"ValueSet"}):
        exp = vs.get("expansion")
        if not exp or "compose" not in vs:
            continue
        if any(p.get("name") == "limitedExpansion" for p in exp.get("parameter", [])):
            truncated += 1  # the reference itself is cut short: nothing to compare with
            continue
        definition = {k: v for k, v in vs.items() if k != "expansion"}
        try:
            ours = core_svc.expand(definition)
        except UnknownCodeSystem:
            external += 1  # needs SNOMED CT, LOINC, ... which are not part of the core package
            continue
        compared += 1
        ref = set(_flat(exp.get("contains", [])))
        got = {(c["system"], c["code"]) for c in ours["expansion"]["contains"]}
        if ref == got:
            agreed += 1
        else:
            disagreements.append((vs["url"], len(ref), len(got)))
    rate = agreed / compared
    print(f"\n$expand agreement with hl7.fhir.r4.expansions: {agreed}/{compared} = {rate:.2%} "
          f"(skipped: {external} need external code systems, {truncated} truncated references)")
    for d in disagreements:
        print("  differs:", d)
    assert compared >= 400
    assert rate >= TARGET, disagreements
