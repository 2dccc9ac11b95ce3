"""``digitalfront terminology ...``: load FHIR packages and native code system releases."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import click
from sqlalchemy import Engine

from terminology.service import TerminologyService


def _database_url(ctx: click.Context, explicit: str | None) -> str:
    if explicit:
        return explicit
    obj = ctx.find_object(dict) or {}
    settings = obj.get("settings") if isinstance(obj, dict) else None
    url = getattr(settings, "database_url", None) or os.environ.get("DIGITALFRONT_DATABASE_URL")
    return str(url or "sqlite:///./var/digitalfront.db")


def _service(ctx: click.Context, database: str | None) -> TerminologyService:
    url = _database_url(ctx, database)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
    return TerminologyService(url)


def _progress(label: str) -> Callable[..., None]:
    start = time.monotonic()

    def report(*args: Any) -> None:
        what = " ".join(str(a) for a in args)
        click.echo(f"  [{time.monotonic() - start:7.1f}s] {label}: {what}", err=True)

    return report


_db_option = click.option("--database", "-d", default=None,
                          help="SQLAlchemy URL (default: DIGITALFRONT_DATABASE_URL or ./var/digitalfront.db)")


@click.group("terminology")
def terminology() -> None:
    """Terminology: CodeSystems, ValueSets, ConceptMaps."""


@terminology.command("load")
@click.argument("package")
@_db_option
@click.pass_context
def load(ctx: click.Context, package: str, database: str | None) -> None:
    """Load a FHIR package (.tgz, folder or name#version) into the terminology tables."""
    svc = _service(ctx, database)
    t0 = time.monotonic()
    try:
        counts = svc.load_package(package, progress=_progress("resources"))
    except (OSError, ValueError, KeyError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"loaded {package}: {counts} in {time.monotonic() - t0:.1f}s")


def _run(ctx: click.Context, database: str | None, name: str, fn: Callable[[Engine], dict[str, int]]) -> None:
    svc = _service(ctx, database)
    t0 = time.monotonic()
    try:
        counts = fn(svc.engine)
    except (OSError, ValueError, KeyError, StopIteration) as e:
        raise click.ClickException(f"{name}: {e or type(e).__name__}") from e
    click.echo(f"loaded {name}: {counts} in {time.monotonic() - t0:.1f}s")


@terminology.command("load-loinc")
@click.argument("loinc_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--hierarchy", type=click.Path(exists=True, dir_okay=False), help="MultiAxialHierarchy.csv")
@click.option("--version", default=None)
@_db_option
@click.pass_context
def load_loinc_cmd(ctx: click.Context, loinc_csv: str, hierarchy: str | None, version: str | None,
                   database: str | None) -> None:
    """Import LOINC from Loinc.csv (and its multiaxial hierarchy)."""
    from terminology.importers.loinc import load_loinc

    _run(ctx, database, "LOINC", lambda e: load_loinc(e, loinc_csv, hierarchy, version, _progress("LOINC")))


@terminology.command("load-snomed")
@click.argument("release_folder", type=click.Path(exists=True, file_okay=False))
@click.option("--version", default=None, help="edition date, e.g. 20240101 (default: from file names)")
@_db_option
@click.pass_context
def load_snomed_cmd(ctx: click.Context, release_folder: str, version: str | None, database: str | None) -> None:
    """Import a SNOMED CT RF2 snapshot (Concept, Description, Relationship files)."""
    from terminology.importers.snomed import load_snomed

    _run(ctx, database, "SNOMED CT", lambda e: load_snomed(e, release_folder, version, _progress("SNOMED CT")))


@terminology.command("load-rxnorm")
@click.argument("rrf_folder", type=click.Path(exists=True, file_okay=False))
@click.option("--version", default=None)
@_db_option
@click.pass_context
def load_rxnorm_cmd(ctx: click.Context, rrf_folder: str, version: str | None, database: str | None) -> None:
    """Import RxNorm from RXNCONSO.RRF and RXNREL.RRF."""
    from terminology.importers.rxnorm import load_rxnorm

    _run(ctx, database, "RxNorm", lambda e: load_rxnorm(e, rrf_folder, version, _progress("RxNorm")))


@terminology.command("load-icd10cm")
@click.argument("order_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--version", default=None)
@_db_option
@click.pass_context
def load_icd10cm_cmd(ctx: click.Context, order_file: str, version: str | None, database: str | None) -> None:
    """Import ICD-10-CM from the CMS order file (icd10cm_order_<year>.txt)."""
    from terminology.importers.icd10cm import load_icd10cm

    _run(ctx, database, "ICD-10-CM", lambda e: load_icd10cm(e, order_file, version, _progress("ICD-10-CM")))


@terminology.command("list")
@_db_option
@click.pass_context
def list_cmd(ctx: click.Context, database: str | None) -> None:
    """List the loaded code systems."""
    for cs in _service(ctx, database).index.list_code_systems():
        click.echo(f"{cs.url}|{cs.version}\t{cs.content}\t{cs.concept_count}")
