"""Generate ``terminology/data/r4-core-terminology.ndjson.gz`` from the official
``hl7.fhir.r4.examples`` package, so the server ships the core R4 terminology
without needing the package at run time.

    python -m terminology.build_core [PACKAGE]
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from terminology.loader import CORE_DATA, TX_TYPES
from terminology.packages import iter_resources, shared_package

_DROP = ("text", "meta", "contact", "extension", "identifier", "jurisdiction", "copyright")


def build(spec: str | Path, out: Path = CORE_DATA) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    lines = list(core_lines(spec))
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
        for line in lines:
            gz.write(line.encode("utf-8"))
            n += 1
    return n


def core_lines(spec: str | Path) -> Iterator[str]:
    """The bundled file's lines, deterministic so a test can check the file is up to date."""
    for res in iter_resources(spec, TX_TYPES):
        if res.get("url"):
            slim = {k: v for k, v in res.items() if k not in _DROP}
            yield json.dumps(slim, separators=(",", ":"), sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    spec = argv[0] if argv else shared_package("hl7.fhir.r4.examples")
    if spec is None:
        print("hl7.fhir.r4.examples package not found; pass its path", file=sys.stderr)
        return 2
    n = build(spec)
    print(f"wrote {n} resources to {CORE_DATA} ({CORE_DATA.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
