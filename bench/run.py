"""`make bench`: every area's benchmark in turn; each writes its figures into bench/out/ and prints them.

    .venv/bin/python bench/run.py [--quick] [--only core,hl7,...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHES = {
    "core": ["core_bench.py", "--postgres"],
    "search": ["search_bench.py", "--postgres"],
    "hl7": ["hl7_bench.py"],
    "export": ["export_bench.py"],
    "terminology": ["terminology_bench.py"],
    "validation": ["validation_bench.py"],
    "cds": ["cds_bench.py"],
    "nlp": ["nlp_bench.py"],
    "inference": ["inference_bench.py"],
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    wanted = [b for b in args.only.split(",") if b] or list(BENCHES)
    failed = []
    for name in wanted:
        script, *extra = BENCHES[name]
        if not (HERE / script).exists():
            print(f"== {name}: {script} not present, skipped")
            continue
        cmd = [sys.executable, str(HERE / script), *extra, *(["--quick"] if args.quick else [])]
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
