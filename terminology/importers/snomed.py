"""SNOMED CT RF2 snapshot: concepts, descriptions and active is-a relationships (-> closure)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from terminology.importers.common import CodeSystemWriter, Progress, read_rf2

SYSTEM = "http://snomed.info/sct"
IS_A = "116680003"
FSN = "900000000000003001"
SYNONYM = "900000000000013009"
DESCRIPTION_USE = "http://snomed.info/sct"


def find_files(folder: str | Path) -> tuple[Path, Path, Path]:
    """The snapshot Concept, Description and (stated or inferred) Relationship files of a release folder."""
    root = Path(folder)

    def one(pattern: str) -> Path:
        hits = sorted(p for p in root.rglob(pattern) if "Snapshot" in str(p))
        if not hits:
            raise FileNotFoundError(f"no {pattern} under {root}")
        return hits[0]

    return one("sct2_Concept_*Snapshot*.txt"), one("sct2_Description_*Snapshot*.txt"), \
        one("sct2_Relationship_Snapshot*.txt")


def load_snomed(engine: Engine, folder: str | Path, version: str | None = None,
                progress: Progress | None = None) -> dict[str, int]:
    concepts_f, descriptions_f, relationships_f = find_files(folder)
    edition = version or concepts_f.stem.rsplit("_", 1)[-1]
    header = {"url": SYSTEM, "version": f"http://snomed.info/sct/900000000000207008/version/{edition}",
              "name": "SNOMED_CT", "title": "SNOMED CT", "caseSensitive": False,
              "valueSet": SYSTEM + "?fhir_vs", "hierarchyMeaning": "is-a"}
    with CodeSystemWriter(engine, header, progress) as w:
        for r in read_rf2(concepts_f):
            w.concept(r["id"], None, inactive=r["active"] != "1")
            if r.get("moduleId"):
                w.property(r["id"], "moduleId", r["moduleId"], "code")
            if r.get("definitionStatusId"):
                w.property(r["id"], "sufficientlyDefined",
                           "true" if r["definitionStatusId"] == "900000000000073002" else "false", "boolean")
        n = 0
        for r in read_rf2(descriptions_f):
            if r["active"] != "1":
                continue
            w.designation(r["conceptId"], r["term"], r.get("languageCode") or None, r["typeId"], DESCRIPTION_USE)
            if r["typeId"] == FSN:
                term = r["term"]
                cut = term.rfind(" (")
                w.display(r["conceptId"], term[:cut] if cut > 0 and term.endswith(")") else term)
            n += 1
            if progress is not None and n % 100_000 == 0:
                progress("descriptions", n)
        n = 0
        for r in read_rf2(relationships_f):
            if r["active"] == "1" and r["typeId"] == IS_A:
                w.edge(r["sourceId"], r["destinationId"])
                n += 1
                if progress is not None and n % 100_000 == 0:
                    progress("is-a relationships", n)
    return {**w.counts, "cs_id": w.cs_id}
