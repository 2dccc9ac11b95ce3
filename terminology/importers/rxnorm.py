"""RxNorm from the RRF release: ``RXNCONSO.RRF`` (concepts, names) and ``RXNREL.RRF`` (relations)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine

from terminology.importers.common import CodeSystemWriter, Progress, open_text

SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CONSO = ("RXCUI", "LAT", "TS", "LUI", "STT", "SUI", "ISPREF", "RXAUI", "SAUI", "SCUI", "SDUI", "SAB", "TTY",
         "CODE", "STR", "SRL", "SUPPRESS", "CVF")
REL = ("RXCUI1", "RXAUI1", "STYPE1", "REL", "RXCUI2", "RXAUI2", "STYPE2", "RELA", "RUI", "SRUI", "SAB", "SL",
       "RG", "DIR", "SUPPRESS", "CVF")
# Preferred term types for the display, best first.
_TTY_RANK = {t: i for i, t in enumerate(("SCD", "SBD", "GPCK", "BPCK", "IN", "PIN", "MIN", "BN", "SCDF",
                                         "SBDF", "SCDC", "SBDC", "DF", "DFG", "SCDG", "SBDG", "ET", "SY",
                                         "TMSY", "PSN"))}
HIERARCHY_RELA = {"isa"}


def read_rrf(path: str | Path, columns: tuple[str, ...]) -> Iterator[dict[str, str]]:
    with open_text(path) as fh:
        for line in fh:
            parts = line.rstrip("\r\n").split("|")
            yield dict(zip(columns, parts, strict=False))


def load_rxnorm(engine: Engine, folder: str | Path, version: str | None = None,
                progress: Progress | None = None) -> dict[str, int]:
    """RXNCONSO rows come grouped by RXCUI in the release; each group becomes one concept."""
    root = Path(folder)
    conso = next(root.rglob("RXNCONSO.RRF"))
    rel = next(iter(root.rglob("RXNREL.RRF")), None)
    header = {"url": SYSTEM, "version": version or "", "name": "RxNorm", "caseSensitive": False}
    rows = (r for r in read_rrf(conso, CONSO) if r.get("SAB") == "RXNORM" and r.get("LAT", "ENG") == "ENG")
    with CodeSystemWriter(engine, header, progress) as w:
        for cui, group_iter in itertools.groupby(rows, key=lambda r: r["RXCUI"]):
            group = list(group_iter)
            best = min(group, key=lambda r: _TTY_RANK.get(r["TTY"], 99))
            suppressed = all(r.get("SUPPRESS") not in ("", "N") for r in group)
            w.concept(cui, best["STR"], inactive=suppressed)
            for tty in sorted({r["TTY"] for r in group}):
                w.property(cui, "TTY", tty, "code")
            for r in group:
                if r is not best:
                    w.designation(cui, r["STR"], "en", r["TTY"], SYSTEM)
        if rel is not None:
            for r in read_rrf(rel, REL):
                if r.get("SAB") != "RXNORM" or not r.get("RELA"):
                    continue
                # "RXCUI2 <RELA> RXCUI1": e.g. an SCD has_ingredient an IN.
                if r["RELA"] in HIERARCHY_RELA:
                    w.edge(r["RXCUI2"], r["RXCUI1"])
                else:
                    w.property(r["RXCUI2"], r["RELA"], r["RXCUI1"], "code")
    return {**w.counts, "cs_id": w.cs_id}
