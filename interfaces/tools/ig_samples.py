"""The HL7 v2-to-FHIR IG's sample messages: read from its test_conversions.md, and shipped as demo files.

The README's copy-paste HL7v2 examples need messages a newcomer has; these are the IG's own samples
(Apache-2.0), one per message structure, written to ``digitalfront/demo_data/hl7v2/`` by
``python -m interfaces.tools.ig_samples ../shared/corpora/v2-to-fhir/samples/test_conversions.md``.
The tests read the same samples through ``read_ig_messages``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parents[2] / "digitalfront" / "demo_data" / "hl7v2"


def read_ig_messages(path: Path) -> dict[str, str]:
    """Message structure (MSH-9.3) -> message text with CR segment separators, from test_conversions.md."""
    out: dict[str, str] = {}
    for m in re.finditer(r"<tr>\n(MSH.*?)</tr>", path.read_text(encoding="utf-8", errors="replace"), re.S):
        text = "\r".join(line.removeprefix("<br>").rstrip() for line in m.group(1).strip().splitlines())
        text = "\r".join(s for s in text.split("\r") if s.strip()) + "\r"
        structure = text.split("\r")[0].split("|")[8].split("^")[-1]
        out[structure] = text
    return out


def write_demo_files(source: Path, out_dir: Path = DEMO_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for structure, text in sorted(read_ig_messages(source).items()):
        target = out_dir / f"{structure.lower()}.hl7"
        target.write_bytes(text.encode("utf-8"))
        written.append(target)
    return written


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m interfaces.tools.ig_samples .../v2-to-fhir/samples/test_conversions.md")
    for path in write_demo_files(Path(sys.argv[1])):
        print(path)


if __name__ == "__main__":
    main()
