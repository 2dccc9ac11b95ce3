"""LOINC from ``Loinc.csv`` plus the multiaxial hierarchy (``MultiAxialHierarchy.csv``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from terminology.importers.common import CodeSystemWriter, Progress, read_csv

SYSTEM = "http://loinc.org"
PROPERTIES = ("COMPONENT", "PROPERTY", "TIME_ASPCT", "SYSTEM", "SCALE_TYP", "METHOD_TYP", "CLASS",
              "CLASSTYPE", "STATUS", "ORDER_OBS")


def load_loinc(engine: Engine, loinc_csv: str | Path, hierarchy_csv: str | Path | None = None,
               version: str | None = None, progress: Progress | None = None) -> dict[str, int]:
    header = {"url": SYSTEM, "version": version or "", "name": "LOINC", "title": "LOINC",
              "caseSensitive": False, "valueSet": "http://loinc.org/vs", "hierarchyMeaning": "is-a"}
    parts_seen: set[str] = set()  # LP part codes only (~10^5): they exist solely in the hierarchy file
    with CodeSystemWriter(engine, header, progress) as w:
        for r in read_csv(loinc_csv):
            code = r.get("LOINC_NUM")
            if not code:
                continue
            display = r.get("LONG_COMMON_NAME") or r.get("SHORTNAME") or r.get("COMPONENT")
            w.concept(code, display, r.get("DefinitionDescription") or None,
                      inactive=(r.get("STATUS") or "").upper() == "DEPRECATED")
            for prop in PROPERTIES:
                if r.get(prop):
                    w.property(code, prop, r[prop], "string" if prop != "CLASSTYPE" else "code")
            if r.get("SHORTNAME"):
                w.designation(code, r["SHORTNAME"], "en-US", "SHORTNAME", SYSTEM)
        if hierarchy_csv is not None:
            for r in read_csv(hierarchy_csv):
                code, parent = r.get("CODE"), r.get("IMMEDIATE_PARENT")
                if not code:
                    continue
                for part in (code, parent):
                    if part and part.startswith("LP") and part not in parts_seen:
                        parts_seen.add(part)
                        w.concept(part, r.get("CODE_TEXT") if part == code else None, abstract=True)
                if parent:
                    w.edge(code, parent)
                if code in parts_seen and r.get("CODE_TEXT"):
                    w.display(code, r["CODE_TEXT"])
    return {**w.counts, "cs_id": w.cs_id}
