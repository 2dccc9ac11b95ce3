"""Compile the hot modules (``fhir_server.compiled.MODULES``) with mypyc into ``.compiled/``.

The build runs on a copy of the sources in a temporary folder, so no binary ever lands next to a ``.py``
file; the output folder gets the extension modules, mypyc's shared runtime module and a manifest of the
hashes of every source of their packages, which ``fhir_server.compiled.activate()`` checks before use.
When the folder is already current this does nothing. Without mypyc or a C compiler it says so and exits
0 (the server then runs the same code as pure Python), unless ``--strict``.

    .venv/bin/python scripts/build_compiled.py [--out DIR] [--strict] [--force]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["DIGITALFRONT_PURE_PYTHON"] = "1"  # this process checks the build, it does not use it

from fhir_server.compiled import (  # noqa: E402
    MANIFEST,
    MODULES,
    default_dir,
    package_sources,
    packages,
    source_of,
    usable,
)

MYPY_INI = """[mypy]
python_version = 3.11
ignore_missing_imports = True
check_untyped_defs = True
warn_unused_ignores = False
"""


def build(out: Path) -> None:
    sources = package_sources()
    with tempfile.TemporaryDirectory(prefix="df-mypyc-") as tmp:
        work = Path(tmp)
        for package in packages():  # the sources only, no data files
            shutil.copytree(ROOT / package, work / package, ignore=_not_python)
        (work / "mypy.ini").write_text(MYPY_INI)
        paths = [str(source_of(m).relative_to(ROOT)) for m in MODULES]
        done = subprocess.run([sys.executable, "-m", "mypyc", *paths],  # noqa: S603 - our own module paths
                              cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mypyc failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        staging = out.with_name(out.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        modules: dict[str, dict[str, str]] = {}
        for m in MODULES:
            rel = Path(*m.split(".")).with_suffix("").as_posix() + suffix
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / rel, staging / rel)
            modules[m] = {"file": rel}
        shared = {f.name[: -len(suffix)]: {"file": f.name} for f in work.glob(f"*__mypyc{suffix}")}
        for entry in shared.values():
            shutil.copy2(work / entry["file"], staging / entry["file"])
    if package_sources() != sources:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError("a source changed during the build; run it again")
    import mypy.version

    (staging / MANIFEST).write_text(json.dumps({
        "ext_suffix": suffix, "python": sys.version.split()[0], "mypy": mypy.version.__version__,
        "modules": modules, "shared": shared, "sources": sources}, indent=1, sort_keys=True))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def _not_python(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if not n.endswith(".py") and not (Path(folder) / n).is_dir() or n == "__pycache__"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: DIGITALFRONT_COMPILED or .compiled)")
    ap.add_argument("--strict", action="store_true", help="fail when the build fails (default: warn, exit 0)")
    ap.add_argument("--force", action="store_true", help="rebuild even when the folder is current")
    args = ap.parse_args()
    out = (args.out or default_dir()).resolve()
    if not args.force and usable(out) is not None:
        print(f"compiled modules in {out} are current")
        return 0
    try:
        build(out)
    except Exception as exc:  # noqa: BLE001 - no compiler, no mypyc: the pure-Python modules still serve
        print(f"compiled modules NOT built ({exc}); the server runs the pure-Python modules", file=sys.stderr)
        return 1 if args.strict else 0
    print(f"compiled {len(MODULES)} modules into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
