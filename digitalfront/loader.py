"""``digitalfront load``: Bundles, NDJSON, folders, .json.gz files and FHIR NPM packages.

Transaction bundles are all-or-nothing (as the spec says); every other input is
loaded entry by entry, so one bad resource never stops the rest.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fhir_server.model import SYSTEM_CONTEXT, FhirRequest


@dataclass
class LoadSummary:
    loaded: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)

    @property
    def total_loaded(self) -> int:
        return sum(self.loaded.values())

    def report(self) -> str:
        lines = [f"loaded {self.total_loaded} resources, {len(self.failed)} failed"]
        lines += [f"  {t}: {n}" for t, n in sorted(self.loaded.items())]
        for where, why in self.failed[:50]:
            lines.append(f"  FAILED {where}: {why}")
        if len(self.failed) > 50:
            lines.append(f"  ... and {len(self.failed) - 50} more failures")
        return "\n".join(lines)


def _open_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read()
    return path.read_text(encoding="utf-8")


def iter_inputs(paths: list[str]) -> Iterator[tuple[str, Any]]:
    """(label, document) pairs: a document is a resource dict or a list of resource dicts (NDJSON/package)."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and
                           (f.name.endswith((".json", ".json.gz", ".ndjson", ".ndjson.gz", ".tgz"))))
            yield from iter_inputs([str(f) for f in files])
            continue
        if p.name.endswith(".tgz") or p.name.endswith(".tar.gz"):
            with tarfile.open(p, "r:gz") as tar:
                resources = []
                for m in tar.getmembers():
                    if not m.isfile() or not m.name.startswith("package/") or not m.name.endswith(".json"):
                        continue
                    if m.name in ("package/package.json", "package/.index.json") or "/other/" in m.name:
                        continue
                    fh = tar.extractfile(m)
                    if fh is None:
                        continue
                    try:
                        res = json.load(fh)
                    except json.JSONDecodeError as exc:
                        yield f"{p}:{m.name}", ValueError(f"malformed JSON: {exc}")
                        continue
                    if isinstance(res, dict) and "resourceType" in res:
                        resources.append(res)
                yield str(p), resources
            continue
        try:
            text = _open_text(p)
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            yield str(p), ValueError(f"cannot read: {exc}")
            continue
        if ".ndjson" in p.name:
            docs = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        docs.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        yield f"{p}:{n}", ValueError(f"malformed JSON: {exc}")
            yield str(p), docs
        else:
            try:
                yield str(p), json.loads(text)
            except json.JSONDecodeError as exc:
                yield str(p), ValueError(f"malformed JSON: {exc}")


class Loader:
    def __init__(self, router: Any, progress: bool = True) -> None:
        self.router = router
        self.progress = progress
        self.summary = LoadSummary()

    def _write(self, label: str, resource: dict[str, Any]) -> None:
        rt = resource.get("resourceType")
        if resource.get("id"):
            req = FhirRequest("PUT", f"{rt}/{resource['id']}", resource=resource, context=SYSTEM_CONTEXT)
        else:
            req = FhirRequest("POST", str(rt), resource=resource, context=SYSTEM_CONTEXT)
        resp = self.router.handle(req)
        if resp.status >= 400:
            self.summary.failed.append((f"{label} {rt}/{resource.get('id', '')}", _reason(resp.resource)))
        else:
            self.summary.loaded[str(rt)] += 1

    def load_document(self, label: str, doc: Any) -> None:
        if isinstance(doc, Exception):
            self.summary.failed.append((label, str(doc)))
            return
        if isinstance(doc, list):
            for i, res in enumerate(doc):
                if isinstance(res, dict):
                    self._write(f"{label}[{i}]", res)
                else:
                    self.summary.failed.append((f"{label}[{i}]", "not a JSON object"))
            return
        if not isinstance(doc, dict) or "resourceType" not in doc:
            self.summary.failed.append((label, "not a FHIR resource"))
            return
        if doc["resourceType"] == "Bundle" and doc.get("type") in ("transaction", "batch"):
            resp = self.router.handle(FhirRequest("POST", "", resource=doc, context=SYSTEM_CONTEXT))
            if resp.status >= 400:
                self.summary.failed.append((label, _reason(resp.resource)))
                return
            for entry, out in zip(doc.get("entry", []), (resp.resource or {}).get("entry", []), strict=False):
                status = out.get("response", {}).get("status", "")
                rt = (entry.get("resource") or {}).get("resourceType") or entry.get("request", {}).get("url", "")
                if status[:1] in ("2",):
                    self.summary.loaded[str(rt)] += 1
                else:
                    self.summary.failed.append((f"{label} {rt}", _reason(out.get("response", {}).get("outcome"))))
            return
        if doc["resourceType"] == "Bundle" and doc.get("type") in ("collection", "searchset", "document",
                                                                  "message", "history"):
            for i, e in enumerate(doc.get("entry", [])):
                if isinstance(e, dict) and isinstance(e.get("resource"), dict):
                    self._write(f"{label} entry[{i}]", e["resource"])
            return
        self._write(label, doc)

    def load(self, paths: list[str]) -> LoadSummary:
        inputs = list(iter_inputs(paths))
        bar = tqdm(inputs, desc="loading", unit="file", disable=not self.progress)
        for label, doc in bar:
            self.load_document(label, doc)
            bar.set_postfix(loaded=self.summary.total_loaded, failed=len(self.summary.failed))
        return self.summary


def _reason(outcome: Any) -> str:
    if isinstance(outcome, dict):
        msgs = [i.get("diagnostics") or i.get("code", "") for i in outcome.get("issue", [])]
        return "; ".join(m for m in msgs if m)[:500] or "failed"
    return "failed"
