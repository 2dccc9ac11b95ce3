"""NLP throughput: notes/s and sentences/s, ours vs bare medSpaCy with the same target rules (same run).

Usage: .venv/bin/python bench/nlp_bench.py [--quick]
Notes are built from the evaluation corpus, grouped under realistic section headers (~3 KB each).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable

HEADERS = ["Chief Complaint:", "HPI:", "Past Medical History:", "Medications:", "Allergies:", "Family History:",
           "Social History:", "Review of Systems:", "Physical Exam:", "Assessment and Plan:"]


def build_notes(n: int, target_chars: int = 3000) -> list[str]:
    from nlp.eval import load_corpus

    sents = [ex.text for ex in load_corpus()]
    notes: list[str] = []
    i = 0
    for _ in range(n):
        parts: list[str] = []
        size = 0
        h = 0
        while size < target_chars:
            block = " ".join(sents[(i + k) % len(sents)] for k in range(4))
            i += 4
            line = f"{HEADERS[h % len(HEADERS)]} {block}"
            h += 1
            parts.append(line)
            size += len(line) + 1
        notes.append("\n".join(parts))
    return notes


def timed(fn: Callable[[], object], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


_worker = None


def _init() -> None:
    global _worker
    from nlp.pipeline import ClinicalNlp

    _worker = ClinicalNlp()


def _extract(text: str) -> int:
    assert _worker is not None
    return len(_worker.extract(text))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, repeats = (20, 3) if args.quick else (100, 5)
    from nlp.fhir_mapping import to_bundle
    from nlp.pipeline import ClinicalNlp

    notes = build_notes(n)
    base, ours = ClinicalNlp(tuned=False), ClinicalNlp()
    n_sents = sum(len(list(ours.nlp(t).sents)) for t in notes)
    kb = sum(len(t) for t in notes) / n / 1024
    print(f"{n} notes, {kb:.1f} KB each, {n_sents} sentences; median of {repeats} runs")

    def run_base() -> None:
        for t in notes:
            base.mentions_from_doc(base.nlp(t))

    def run_ours() -> None:
        for t in notes:
            ours.extract(t)

    def run_ours_fhir() -> None:
        for t in notes:
            to_bundle(ours.extract(t), "Patient/1", "DocumentReference/1", text=t, recorded="2024-01-01T00:00:00Z")

    def run_pipe() -> None:
        list(ours.pipe(notes, batch_size=16))

    def run_mp() -> None:
        with mp.get_context("fork").Pool(2, initializer=_init) as pool:
            pool.map(_extract, notes, chunksize=4)

    results = {name: timed(fn, repeats) for name, fn in [
        ("baseline medspacy (same rules)", run_base), ("ours", run_ours), ("ours + FHIR mapping", run_ours_fhir),
        ("ours nlp.pipe", run_pipe), ("ours 2 processes (incl. pool start)", run_mp)]}
    b = results["baseline medspacy (same rules)"]
    for name, secs in results.items():
        print(f"{name:<38} {n / secs:8.1f} notes/s {n_sents / secs:9.1f} sentences/s  "
              f"ratio vs baseline {b / secs:5.2f}")
    overhead = results["ours + FHIR mapping"] / results["ours"] - 1
    print(f"FHIR mapping overhead: {overhead * 100:.1f}% (target <= 15%)")


if __name__ == "__main__":
    main()
