"""Terminology benchmarks: $validate-code, $subsumes and $expand on a generated
SNOMED-shaped RF2 release, each next to the equivalent single indexed SQL lookup.

    .venv/bin/python bench/terminology_bench.py [--quick] [--concepts N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_server.model import FhirRequest  # noqa: E402
from terminology.importers.snomed import load_snomed  # noqa: E402
from terminology.loader import iter_core_resources  # noqa: E402
from terminology.service import TerminologyService  # noqa: E402
from terminology.web import make_handler  # noqa: E402

SCT = "http://snomed.info/sct"


def write_rf2(folder: Path, n: int, fanout: int = 3, seed: int = 7) -> dict[int, int]:
    """A ternary is-a tree (plus a second parent for every 10th concept); returns subtree sizes."""
    rnd = random.Random(seed)
    ids = [str(100000000 + i * 10 + 1) for i in range(n)]  # SNOMED-looking ids
    parents: list[list[int]] = [[]] + [[(i - 1) // fanout] for i in range(1, n)]
    for i in range(10, n, 10):
        extra = rnd.randrange(0, max(1, i // 2))
        if extra not in parents[i]:
            parents[i].append(extra)
    with open(folder / "sct2_Concept_Snapshot_INT_20240101.txt", "w") as f:
        f.write("id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId\n")
        for cid in ids:
            f.write(f"{cid}\t20240101\t1\t900000000000207008\t900000000000074008\n")
    with open(folder / "sct2_Description_Snapshot-en_INT_20240101.txt", "w") as f:
        f.write("id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId\n")
        for i, cid in enumerate(ids):
            f.write(f"{i}011\t20240101\t1\t900000000000207008\t{cid}\ten\t900000000000003001\t"
                    f"Generated concept {i} (finding)\t900000000000448009\n")
    with open(folder / "sct2_Relationship_Snapshot_INT_20240101.txt", "w") as f:
        f.write("id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId\t"
                "characteristicTypeId\tmodifierId\n")
        k = 0
        for i, ps in enumerate(parents):
            for p in ps:
                k += 1
                f.write(f"{k}025\t20240101\t1\t900000000000207008\t{ids[i]}\t{ids[p]}\t0\t116680003\t"
                        "900000000000011006\t900000000000451002\n")
    size = [1] * n
    for i in range(n - 1, 0, -1):
        size[(i - 1) // fanout] += size[i]
    return {i: size[i] for i in range(n)}


def timeit(fn, args_list) -> list[float]:
    out = []
    for a in args_list:
        t = time.perf_counter()
        fn(*a)
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--concepts", type=int, default=None)
    args = ap.parse_args()
    n = args.concepts or (20_000 if args.quick else 120_000)
    reps = 300 if args.quick else 2000
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        # 1. first-start load of the bundled core R4 terminology vs. just parsing its file
        t = time.perf_counter()
        parsed = sum(1 for _ in iter_core_resources())
        parse_s = time.perf_counter() - t
        core = TerminologyService(f"sqlite:///{tmpd / 'core.db'}")
        t = time.perf_counter()
        core.load_resources(iter_core_resources())
        load_s = time.perf_counter() - t
        rows.append(("core R4 load (2458 resources, 20.7k concepts)", f"{load_s * 1000:.0f} ms",
                     f"parse only {parse_s * 1000:.0f} ms", f"{load_s / parse_s:.1f}x"))
        del parsed

        # 2. the SNOMED-shaped release
        rf2 = tmpd / "rf2"
        rf2.mkdir()
        write_rf2(rf2, n)
        engine = create_engine(f"sqlite:///{tmpd / 'sct.db'}")
        svc = TerminologyService(engine)
        t = time.perf_counter()
        counts = load_snomed(engine, rf2)
        import_s = time.perf_counter() - t
        svc.invalidate()
        rows.append((f"RF2 import ({n} concepts, {counts['relations']} closure rows)", f"{import_s:.1f} s",
                     "", ""))
        ids = [str(100000000 + i * 10 + 1) for i in range(n)]
        rnd = random.Random(1)
        cs_id = counts["cs_id"]
        with engine.connect() as conn:
            seq_of = dict(conn.execute(text("SELECT code, seq FROM tx_concept WHERE cs_id=:c"), {"c": cs_id}).all())

            def sql_code(code: str) -> None:
                conn.execute(text("SELECT seq, display FROM tx_concept WHERE cs_id=:c AND code=:k"),
                             {"c": cs_id, "k": code}).first()

            def sql_pair(a: str, b: str) -> None:
                conn.execute(text("SELECT depth FROM tx_closure WHERE cs_id=:c AND ancestor=:a AND descendant=:b"),
                             {"c": cs_id, "a": seq_of[a], "b": seq_of[b]}).first()

            # $validate-code (ValueSet, is-a of the root's first child) through the operation handler
            vs_url = f"{SCT}?fhir_vs=isa/{ids[1]}"
            handler = make_handler(svc, "validate-code")
            codes = [ids[rnd.randrange(n)] for _ in range(reps)]

            def op_validate(code: str) -> None:
                handler(None, FhirRequest("GET", "ValueSet/$validate-code",
                                          query=[("url", vs_url), ("system", SCT), ("code", code)]),
                        "ValueSet", None)

            op_validate(codes[0])  # warm the value set resolution
            base = timeit(sql_code, [(c,) for c in codes])
            ours = timeit(op_validate, [(c,) for c in codes])
            rows.append(_row("$validate-code (distinct codes, is-a value set)", ours, base, "<= 2 ms p50"))
            ours_w = timeit(op_validate, [(c,) for c in codes])
            rows.append(_row("$validate-code (same codes again: warm caches)", ours_w, base, ""))

            pairs = [(ids[rnd.randrange(n // 40)], ids[rnd.randrange(n)]) for _ in range(reps)]
            sub = make_handler(svc, "subsumes")

            def op_subsumes(a: str, b: str) -> None:
                sub(None, FhirRequest("GET", "CodeSystem/$subsumes",
                                      query=[("system", SCT), ("codeA", a), ("codeB", b)]), "CodeSystem", None)

            base = timeit(sql_pair, pairs)
            ours = timeit(op_subsumes, pairs)
            rows.append(_row("$subsumes (random pairs, deep hierarchy)", ours, base, "<= 2 ms p50"))

            # the node whose real descendant count (second parents included) is nearest 10,000
            best = conn.execute(text(
                "SELECT ancestor, COUNT(*) AS n FROM tx_closure WHERE cs_id=:c GROUP BY ancestor "
                "ORDER BY ABS(COUNT(*) - 9999) LIMIT 1"), {"c": cs_id}).first()
            code_of = {v: k for k, v in seq_of.items()}
            target = ids.index(code_of[best[0]])
            exp_url = f"{SCT}?fhir_vs=isa/{ids[target]}"
            exp = make_handler(svc, "expand")

            def sql_expand() -> None:
                conn.execute(text("SELECT c.code, c.display FROM tx_closure x JOIN tx_concept c ON c.cs_id=x.cs_id "
                                  "AND c.seq=x.descendant WHERE x.cs_id=:c AND x.ancestor=:a ORDER BY c.seq"),
                             {"c": cs_id, "a": seq_of[ids[target]]}).all()

            def op_expand_cold() -> None:
                svc.invalidate()
                r = exp(None, FhirRequest("GET", "ValueSet/$expand", query=[("url", exp_url)]), "ValueSet", None)
                op_expand_cold.total = r.resource["expansion"]["total"]  # type: ignore[attr-defined]

            k = 5 if args.quick else 15
            base = timeit(sql_expand, [()] * k)
            ours = timeit(op_expand_cold, [()] * k)
            total = op_expand_cold.total  # type: ignore[attr-defined]
            rows.append(_row(f"$expand {total} codes (cold caches)", ours, base, "<= 200 ms"))
    print(f"\nTerminology bench ({'quick' if args.quick else 'full'}, {n} generated concepts)")
    print(f"{'figure':58} {'ours':>22} {'baseline':>26} {'ratio':>8}")
    for r in rows:
        print(f"{r[0]:58} {r[1]:>22} {r[2]:>26} {r[3]:>8}")
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    (out / "terminology.json").write_text(json.dumps(rows, indent=1))
    return 0


def _row(name: str, ours: list[float], base: list[float], target: str) -> tuple[str, str, str, str]:
    o50, o99 = summary(ours)
    b50, b99 = summary(base)
    tgt = f" ({target})" if target else ""
    return (name + tgt, f"p50 {o50:.3f} / p99 {o99:.3f} ms", f"SQL p50 {b50:.3f} / p99 {b99:.3f} ms",
            f"{o50 / b50:.1f}x")


if __name__ == "__main__":
    raise SystemExit(main())
