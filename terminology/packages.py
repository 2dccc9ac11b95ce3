"""Reading FHIR NPM packages (``package/`` tarball layout), cached like other FHIR tools.

A package is given as a ``.tgz`` path, an unpacked folder, or ``name#version``
found in the FHIR package cache (``~/.fhir/packages`` or ``$FHIR_PACKAGE_CACHE``).
Tarballs are unpacked once into that cache so later reads are plain file reads.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    return Path(os.environ.get("FHIR_PACKAGE_CACHE", Path.home() / ".fhir" / "packages"))


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    dest_resolved = dest.resolve()
    members = []
    for m in tar.getmembers():
        target = (dest / m.name).resolve()
        if not str(target).startswith(str(dest_resolved)) or m.issym() or m.islnk():
            continue  # path traversal or links: never follow from untrusted archives
        members.append(m)
    tar.extractall(dest, members=members)  # noqa: S202 - members filtered above


def package_root(spec: str | os.PathLike[str]) -> Path:
    """Return the folder holding ``package/package.json`` for a tarball, folder or ``name#version``."""
    p = Path(spec)
    if p.is_dir():
        return p if (p / "package").is_dir() else p.parent
    if p.is_file():
        with tarfile.open(p, "r:gz") as tar:
            manifest = tar.extractfile("package/package.json")
            if manifest is None:
                raise ValueError(f"{p} is not a FHIR package (no package/package.json)")
            meta = json.load(manifest)
            dest = cache_dir() / f"{meta['name']}#{meta['version']}"
            if not (dest / "package" / "package.json").exists():
                tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
                tmp.mkdir(parents=True, exist_ok=True)
                _safe_extract(tar, tmp)
                try:
                    tmp.rename(dest)
                except OSError:  # another process won the race; its copy is identical
                    pass
            return dest
    cached = cache_dir() / str(spec)
    if (cached / "package").is_dir():
        return cached
    raise FileNotFoundError(f"FHIR package not found: {spec}")


def package_manifest(spec: str | os.PathLike[str]) -> dict[str, Any]:
    with open(package_root(spec) / "package" / "package.json", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def iter_resources(spec: str | os.PathLike[str], resource_types: set[str] | None = None,
                   ) -> Iterator[dict[str, Any]]:
    """Yield each resource JSON file of a package, optionally filtered by type (cheap: filename first)."""
    folder = package_root(spec) / "package"
    for path in sorted(folder.glob("*.json")):
        name = path.name
        if name in ("package.json", ".index.json"):
            continue
        if resource_types is not None and name.split("-", 1)[0] not in resource_types:
            continue
        with open(path, encoding="utf-8") as fh:
            try:
                res = json.load(fh)
            except json.JSONDecodeError:
                continue
        if not isinstance(res, dict) or "resourceType" not in res:
            continue
        if resource_types is None or res["resourceType"] in resource_types:
            yield res


def shared_package(name: str) -> Path | None:
    """Locate an official package in the repo's sibling ``../shared/fhir-packages`` (dev and tests)."""
    here = Path(__file__).resolve().parents[1]
    for base in (here.parent / "shared" / "fhir-packages", Path.cwd().parent / "shared" / "fhir-packages"):
        hits = sorted(base.glob(f"{name}-*.tgz"))
        if hits:
            return hits[-1]
    return None
