"""Compiled builds of the hot modules (mypyc), used when present and current, pure Python otherwise.

Ingest spends its CPU in a few pure-Python modules: validation walks, search-index extraction, the
v2-to-FHIR datatype converters, the transaction's bookkeeping. ``scripts/build_compiled.py`` compiles
exactly those (listed in ``MODULES``) with mypyc, from the same sources, into a folder outside the
source tree (default ``<repo>/.compiled``; ``DIGITALFRONT_COMPILED`` elsewhere), with a manifest of the
sources' hashes. ``activate()`` puts an import finder for them in front, but only when every source of
their packages still hashes as built and this interpreter can load them: an edited source is never
shadowed by a stale binary, it is simply run as Python (with a warning saying how to rebuild).
``DIGITALFRONT_PURE_PYTHON=1`` turns the compiled modules off.

The folder sits outside the packages on purpose: an extension module next to its ``.py`` would win the
import whether or not it is current.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

# What is compiled: the modules where ingest and writes spend their Python time (bench/RESULTS.md).
MODULES: tuple[str, ...] = (
    "fhir_server.definitions.model",
    "fhir_server.validation.structure",
    "fhir_server.validation.primitives",
    "fhir_server.validation.references",
    "fhir_server.validation.bindings",
    "fhir_server.search.extract",
    "fhir_server.search.values",
    "fhir_server.interactions.prepared",
    "fhir_server.interactions.bundle",
    "fhir_server.interactions.common",
    "fhir_server.interactions.update",
    "fhir_server.interactions.create",
    "interfaces.er7",
    "interfaces.mapping.datatypes",
    "interfaces.mapping.builder",
    "interfaces.mapping.segments.obx",
    "interfaces.mapping.segments.pid",
    "interfaces.mapping.segments.pv1",
    "interfaces.mapping.segments.orders",
    "interfaces.mapping.messages.common",
    "interfaces.mapping.messages.oru_r01",
)
MANIFEST = "manifest.json"
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding fhir_server/ and interfaces/


def default_dir() -> Path:
    return Path(os.environ.get("DIGITALFRONT_COMPILED") or SOURCE_ROOT / ".compiled")


def source_of(module: str) -> Path:
    return SOURCE_ROOT.joinpath(*module.split(".")).with_suffix(".py")


def packages() -> list[str]:
    return sorted({m.split(".")[0] for m in MODULES})


def package_sources() -> dict[str, str]:
    """SHA-256 of every ``.py`` file of the compiled modules' packages, by path.

    The build type-checks the compiled modules against all of these and bakes the types it saw into the
    binaries (a compiled caller checks what a Python callee returns), so a change to any of them makes the
    build stale, not only a change to a compiled module itself."""
    out: dict[str, str] = {}
    for package in packages():
        for path in sorted((SOURCE_ROOT / package).rglob("*.py")):
            out[path.relative_to(SOURCE_ROOT).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class CompiledFinder(MetaPathFinder):
    """Finds the listed modules (and mypyc's shared runtime module) in the compiled folder."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


_active: CompiledFinder | None = None
_decided = False
_why_not = "not checked yet"


def activate(folder: Path | None = None) -> bool:
    """Use the compiled modules if they are there and current; True when they are in use. Idempotent."""
    global _active, _decided, _why_not
    if _decided:
        return _active is not None
    _decided = True
    if os.environ.get("DIGITALFRONT_PURE_PYTHON", "").lower() in ("1", "true", "yes"):
        _why_not = "turned off (DIGITALFRONT_PURE_PYTHON)"
        return False
    folder = folder or default_dir()
    files = usable(folder)
    if files is None:
        _why_not = f"no current build in {folder} (make builds one: scripts/build_compiled.py)"
        return False
    early = [m for m in MODULES if m in sys.modules]
    if early:  # imported as Python before this ran: mixing the two would break mypyc's cross-module calls
        _why_not = f"{early[0]} was imported before fhir_server.compiled.activate()"
        log.warning("compiled modules not used: %s", _why_not)
        return False
    _active = CompiledFinder(files)
    sys.meta_path.insert(0, _active)
    _why_not = ""
    return True


def usable(folder: Path) -> dict[str, Path] | None:
    """The module files of ``folder``'s build, or None when there is none, or it is stale or foreign."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    if manifest.get("ext_suffix") != suffix or manifest.get("modules", {}).keys() != set(MODULES):
        log.warning("compiled modules in %s were built for another interpreter or module list; running pure "
                    "Python (rebuild: python scripts/build_compiled.py)", folder)
        return None
    built, now = manifest.get("sources", {}), package_sources()
    stale = sorted(p for p in built.keys() | now.keys() if built.get(p) != now.get(p))
    if stale:
        log.warning("compiled modules in %s are older than %s; running pure Python (rebuild: make, or "
                    "python scripts/build_compiled.py)", folder, stale[0])
        return None
    files = {m: folder / entry["file"] for m, entry in {**manifest["modules"], **manifest.get("shared", {})}.items()}
    if not all(f.is_file() for f in files.values()):
        return None
    return files


def active() -> bool:
    """Whether the compiled modules are in use in this process."""
    return _active is not None


def describe() -> str:
    """One line for the start-up banner: in use, or why not (the server is the same either way, slower)."""
    return f"in use ({len(MODULES)} modules)" if _active is not None else f"not in use, pure Python: {_why_not}"


def loaded_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled build (the equivalence test checks both ways)."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)
