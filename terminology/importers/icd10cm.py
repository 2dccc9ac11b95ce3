"""ICD-10-CM from the CMS order file (``icd10cm_order_<year>.txt``, fixed width).

Columns: order number (5), code (7, no dot), header flag (1: 0 = category header,
1 = billable), short description (60), long description. The hierarchy follows the
code prefixes (E11 > E116 > E1165), which every level of the order file contains.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from terminology.importers.common import CodeSystemWriter, Progress, open_text

SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"


def with_dot(code: str) -> str:
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def load_icd10cm(engine: Engine, order_file: str | Path, version: str | None = None,
                 progress: Progress | None = None) -> dict[str, int]:
    header = {"url": SYSTEM, "version": version or "", "name": "ICD10CM", "title": "ICD-10-CM",
              "caseSensitive": False, "hierarchyMeaning": "is-a"}
    with CodeSystemWriter(engine, header, progress) as w, open_text(order_file) as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if len(line) < 16:
                continue
            raw = line[6:13].strip()
            billable = line[14:15] == "1"
            short, long_ = line[16:76].strip(), line[77:].strip()
            code = with_dot(raw)
            w.concept(code, long_ or short, abstract=not billable)
            if short and long_ and short != long_:
                w.designation(code, short, "en", "short", SYSTEM)
            if len(raw) > 3:
                w.edge(code, with_dot(raw[:-1]))
    return {**w.counts, "cs_id": w.cs_id}
