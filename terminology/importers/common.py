"""Streaming writer shared by the native importers.

Rows are buffered in small batches and flushed inside one transaction; relations,
designations and properties are staged by code and resolved to concept sequence
numbers by the database, so memory stays flat however large the release is.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Connection, Engine, and_, delete, insert, select, update

from terminology import store
from terminology.schema import (
    code_system,
    concept,
    concept_property,
    designation,
    metadata,
    parent,
    stage_designation,
    stage_edge,
    stage_property,
)

JsonDict = dict[str, Any]
Progress = Callable[[str, int], None]
BATCH = 5000
_DISPLAY = "__display"

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def open_text(path: str | Path) -> TextIO:
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - caller closes


class CodeSystemWriter:
    def __init__(self, engine: Engine, header: JsonDict, progress: Progress | None = None) -> None:
        self.engine = engine
        self.header = {"resourceType": "CodeSystem", "status": "active", "content": "complete", **header}
        self.progress = progress
        self._conn: Connection | None = None
        self._tx: Any = None
        self.cs_id = 0
        self.seq = 0
        self._buf: dict[Any, list[JsonDict]] = {}
        self.counts = {"concepts": 0, "relations": 0, "designations": 0, "properties": 0}

    def __enter__(self) -> CodeSystemWriter:
        metadata.create_all(self.engine)
        self._conn = self.engine.connect()
        self._tx = self._conn.begin()
        self.cs_id = store.create_code_system_row(self._conn, self.header)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._conn is not None
        try:
            if exc_type is None:
                self._finish()
                self._tx.commit()
            else:
                self._tx.rollback()
        finally:
            self._conn.close()

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "use CodeSystemWriter as a context manager"
        return self._conn

    def _add(self, table: Any, row: JsonDict) -> None:
        buf = self._buf.setdefault(table, [])
        buf.append(row)
        if len(buf) >= BATCH:
            self._flush(table)

    def _flush(self, table: Any) -> None:
        buf = self._buf.get(table)
        if buf:
            self.conn.execute(insert(table), buf)
            self._buf[table] = []

    def concept(self, code: str, display: str | None, definition: str | None = None, inactive: bool = False,
                abstract: bool = False) -> None:
        self.seq += 1
        self._add(concept, {"cs_id": self.cs_id, "seq": self.seq, "code": code, "display": display,
                            "definition": definition, "inactive": inactive, "abstract": abstract})
        self.counts["concepts"] += 1
        if self.progress is not None and self.seq % 50_000 == 0:
            self.progress("concepts", self.seq)

    def edge(self, child_code: str, parent_code: str) -> None:
        if child_code != parent_code:
            self._add(stage_edge, {"cs_id": self.cs_id, "child_code": child_code, "parent_code": parent_code})

    def designation(self, code: str, value: str, language: str | None = None, use_code: str | None = None,
                    use_system: str | None = None) -> None:
        self._add(stage_designation, {"cs_id": self.cs_id, "code": code, "language": language,
                                      "use_system": use_system, "use_code": use_code, "value": value})

    def property(self, code: str, prop: str, value: str, value_type: str = "string") -> None:
        if value != "":
            self._add(stage_property, {"cs_id": self.cs_id, "code": code, "prop": prop,
                                       "value_type": value_type, "value": value})

    def _finish(self) -> None:
        for table in list(self._buf):
            self._flush(table)
        conn, cs_id = self.conn, self.cs_id
        c1, c2 = concept.alias("c1"), concept.alias("c2")
        se, sd, sp = stage_edge, stage_designation, stage_property
        conn.execute(insert(parent).from_select(["cs_id", "child", "parent"], select(
            c1.c.cs_id, c1.c.seq, c2.c.seq).distinct()
            .join(se, and_(se.c.cs_id == c1.c.cs_id, se.c.child_code == c1.c.code))
            .join(c2, and_(c2.c.cs_id == se.c.cs_id, c2.c.code == se.c.parent_code))
            .where(se.c.cs_id == cs_id)))
        self.counts["designations"] = conn.execute(insert(designation).from_select(
            ["cs_id", "seq", "language", "use_system", "use_code", "value"],
            select(c1.c.cs_id, c1.c.seq, sd.c.language, sd.c.use_system, sd.c.use_code, sd.c.value)
            .join(sd, and_(sd.c.cs_id == c1.c.cs_id, sd.c.code == c1.c.code)).where(sd.c.cs_id == cs_id))).rowcount
        self.counts["properties"] = conn.execute(insert(concept_property).from_select(
            ["cs_id", "seq", "code", "value_type", "value"],
            select(c1.c.cs_id, c1.c.seq, sp.c.prop, sp.c.value_type, sp.c.value)
            .join(sp, and_(sp.c.cs_id == c1.c.cs_id, sp.c.code == c1.c.code))
            .where(sp.c.cs_id == cs_id, sp.c.prop != _DISPLAY))).rowcount
        late = (select(sp.c.value).where(sp.c.cs_id == cs_id, sp.c.code == concept.c.code, sp.c.prop == _DISPLAY)
                .limit(1).scalar_subquery())
        conn.execute(update(concept).where(concept.c.cs_id == cs_id, concept.c.code.in_(
            select(sp.c.code).where(sp.c.cs_id == cs_id, sp.c.prop == _DISPLAY))).values(display=late))
        for t in (se, sd, sp):
            conn.execute(delete(t).where(t.c.cs_id == cs_id))
        if self.progress is not None:
            self.progress("closure", 0)
        self.counts["relations"] = store.build_closure_sql(
            conn, cs_id, None if self.progress is None else lambda d, n: self.progress("closure", n))  # type: ignore[misc]
        conn.execute(update(code_system).where(code_system.c.id == cs_id)
                     .values(concept_count=self.counts["concepts"]))

    def display(self, code: str, value: str) -> None:
        """Set a concept's display after it was written (SNOMED CT: from the description file)."""
        self.property(code, _DISPLAY, value)


def read_csv(path: str | Path, delimiter: str = ",") -> Iterator[dict[str, str]]:
    with open_text(path) as fh:
        yield from csv.DictReader(fh, delimiter=delimiter)


def read_rf2(path: str | Path) -> Iterator[dict[str, str]]:
    """RF2 is tab-separated with a header row and no quoting."""
    with open_text(path) as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        for line in fh:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) == len(header):
                yield dict(zip(header, parts, strict=True))
