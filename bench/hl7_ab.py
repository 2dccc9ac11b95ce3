"""Before/after A/B of HL7v2 MLLP ingest: this tree against an older checkout, alternating rounds in the same minutes.

    git worktree add /tmp/old <commit> && ln -s "$PWD/.venv" /tmp/old/.venv
    .venv/bin/python bench/hl7_ab.py --old /tmp/old [--rounds 4] [--messages 400] [--postgres]

Each round runs ``hl7_bench.full()`` of each tree in its own process (fresh database, 8 client connections,
group commit, each tree's default settings); the output is the per-round msg/s and p99, then the medians and
their ratio. Alternating rounds keeps a drifting machine from favouring either side.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

DRIVER = """
import inspect, sys, tempfile
repo, seed, pg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path[:0] = [repo, repo + "/bench"]
import hl7_bench as hb
msgs = hb.make_messages(int(sys.argv[4]), seed=seed)
kw = {"workers": None} if "workers" in inspect.signature(hb.full).parameters else {}
if pg:
    url, drop = hb.pg_database(pg)
    try:
        r = hb.full(url, msgs, 8, True, **kw)
    finally:
        drop()
else:
    with tempfile.TemporaryDirectory() as tmp:
        r = hb.full(f"sqlite:///{tmp}/b.db", msgs, 8, True, **kw)
print(r["msgs_per_s"], r["p99_ms"])
"""


def one(repo: Path, seed: int, pg: str, messages: int) -> tuple[float, float]:
    out = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-c", DRIVER, str(repo), str(seed), pg,
                          str(messages)], cwd=repo, capture_output=True, text=True, check=True)
    rate, p99 = out.stdout.split()[-2:]
    return float(rate), float(p99)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, type=Path, help="checkout of the older commit (with .venv)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--postgres", nargs="?", const="postgresql+psycopg://postgres@127.0.0.1:5432/test", default="")
    args = ap.parse_args()
    new = Path(__file__).resolve().parents[1]
    runs: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    for i in range(args.rounds):
        for side, repo in (("old", args.old.resolve()), ("new", new)):
            runs[side].append(one(repo, 20 + i, args.postgres, args.messages))
        print(f"round {i + 1}: old {runs['old'][-1][0]:.1f} msg/s (p99 {runs['old'][-1][1]:.0f} ms)   "
              f"new {runs['new'][-1][0]:.1f} msg/s (p99 {runs['new'][-1][1]:.0f} ms)", flush=True)
    old, cur = (statistics.median(r for r, _ in runs[s]) for s in ("old", "new"))
    print(f"median: old {old:.1f}, new {cur:.1f} msg/s; new/old {cur / old:.2f}x "
          f"({'PostgreSQL' if args.postgres else 'SQLite'}, {args.messages} messages per round)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
