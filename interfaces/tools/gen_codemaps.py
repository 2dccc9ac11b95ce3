"""Generate interfaces/mapping/codemaps.json from the v2-to-FHIR IG ConceptMap CSVs.

The running server has no ../shared, so the IG's vocabulary maps ship inside
the package as JSON produced by this script:
``python -m interfaces.tools.gen_codemaps ../shared/corpora/v2-to-fhir/mappings/codesystems``.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "mapping" / "codemaps.json"


def load_map(path: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        rows = list(csv.reader(fh))
    for row in rows[2:]:
        if len(row) < 10:
            continue
        code, fhir_code = row[0].strip(), row[6].strip()
        if not code or not fhir_code or code in out:
            continue
        out[code] = {"code": fhir_code, "display": row[8].strip() or row[7].strip(), "system": row[9].strip()}
    return out


def main(argv: list[str]) -> int:
    src = Path(argv[1] if len(argv) > 1 else "../shared/corpora/v2-to-fhir/mappings/codesystems")
    maps: dict[str, dict[str, dict[str, str]]] = {}
    for path in sorted(src.glob("HL7 Concept Map_ *.csv")):
        m = re.match(r"HL7 Concept Map_ (.+?) - .*\.csv$", path.name)
        if m:
            maps[m.group(1).strip()] = load_map(path)
    OUT.write_text(json.dumps(maps, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(maps)} concept maps to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
