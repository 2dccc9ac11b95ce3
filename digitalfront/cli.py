"""The ``digitalfront`` command line."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from digitalfront.config import Settings
from digitalfront.plugins import CLI_PLUGINS
from fhir_server import compiled

DEMO_DIR = Path(__file__).with_name("demo_data")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """DigitalFront: FHIR R4 server, HL7v2 feeds, CDS Hooks, SMART apps and clinical AI."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        quiet_migration_chatter()


def quiet_migration_chatter() -> None:
    """Alembic announces its plugins and its dialect at INFO each time a command opens the database (eight
    lines before ``hl7 replay`` says anything); only a migration step that runs is news."""
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    migration = logging.getLogger("alembic.runtime.migration")
    if not migration.filters:
        migration.addFilter(lambda r: r.levelno > logging.INFO or r.getMessage().startswith("Running "))


def _settings(database_url: str | None) -> Settings:
    s = Settings()
    if database_url:
        s.database_url = database_url
    return s


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--database-url", default=None, help="Default: $DIGITALFRONT_DATABASE_URL or sqlite:///./var/digitalfront.db")
@click.option("--workers", default=int(os.environ.get("DIGITALFRONT_WORKERS", "2")), show_default=True, type=int)
@click.option("--threads", default=int(os.environ.get("DIGITALFRONT_THREADS", "8")), show_default=True, type=int)
@click.option("--demo/--no-demo", default=False, help="Load the bundled demo data set on first start.")
@click.option("--mllp-port", default=None, type=int, help="Also start the HL7v2 MLLP listener on this port.")
def serve(host: str, port: int, database_url: str | None, workers: int, threads: int, demo: bool,
          mllp_port: int | None) -> None:
    """Run the server under gunicorn (a production WSGI server)."""
    from digitalfront.app import build_services
    from digitalfront.wsgi import run_gunicorn

    settings = _settings(database_url)
    os.environ["DIGITALFRONT_DATABASE_URL"] = settings.database_url
    services = build_services(settings)  # migrates before the workers start
    if demo and not services.repo.count_by_type():
        from digitalfront.loader import Loader

        click.echo("First start: loading the demo data set ...")
        summary = Loader(services.router).load([str(DEMO_DIR)])
        click.echo(summary.report())
    if demo:
        click.echo(_smart_demo(services))
    if mllp_port:
        _start_mllp_process(host, mllp_port)
        click.echo(f"MLLP listener on {host}:{mllp_port}")
    base = f"http://{host}:{port}"
    click.echo(f"DigitalFront FHIR base:   {base}/fhir")
    click.echo(f"CapabilityStatement:      {base}/fhir/metadata")
    click.echo(f"Database:                 {settings.database_url}")
    click.echo(f"Compiled hot modules:     {compiled.describe()}")
    if not settings.auth:
        click.secho("Authorization is OFF (DIGITALFRONT_AUTH=off): development only.", fg="yellow")
    run_gunicorn(host, port, workers, threads)


def _start_mllp_process(host: str, port: int) -> None:
    """``digitalfront mllp`` in a process of its own, stopped with this one.

    gunicorn forks its workers from this process, at start and whenever one is replaced; a fork copies only
    the forking thread, so a lock held at that moment by the listener's threads (its writer, the worker
    pool's feeder) would stay held forever in the new worker.
    """
    import atexit
    import subprocess
    import sys

    env = {**os.environ, "DIGITALFRONT_PARENT_PID": str(os.getpid())}
    proc = subprocess.Popen(  # noqa: S603 - the operator's own options, no shell
        [sys.executable, "-m", "digitalfront", "mllp", "--host", host, "--port", str(port)],
        env=env)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    atexit.register(stop)


def _smart_demo(services: Any) -> str:
    """Create the SMART demo app and users (linked to the first demo Patient and Practitioner)."""
    try:
        from smart_apps.cli import ensure_demo
        from smart_apps.store import SmartStore
    except ImportError:
        return ""
    def first_id(resource_type: str) -> str:
        found = services.client.search(resource_type, [("_count", "1")], limit=1)
        return str(found[0]["id"]) if found else "example"

    patient, practitioner = first_id("Patient"), first_id("Practitioner")
    return ensure_demo(SmartStore(services.engine), patient, practitioner)


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--database-url", default=None)
@click.option("--revision", default="head", show_default=True)
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Apply Alembic migrations."""
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade

    settings = _settings(database_url)
    upgrade(make_engine(settings.database_url, synchronous=settings.sqlite_synchronous), revision)
    click.echo(f"database at {revision}: {settings.database_url}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--database-url", default=None)
@click.option("--no-validate", is_flag=True, help="Skip validation (trusted bulk loads).")
def load(paths: tuple[str, ...], database_url: str | None, no_validate: bool) -> None:
    """Load Bundles, NDJSON, folders, .json.gz files or FHIR NPM package tarballs."""
    from digitalfront.app import build_services
    from digitalfront.loader import Loader

    settings = _settings(database_url)
    if no_validate:
        settings.validate_writes = False
    services = build_services(settings)
    summary = Loader(services.router, progress=sys.stderr.isatty()).load(list(paths))
    from fhir_server.storage.engine import optimize

    optimize(services.engine)  # fresh planner statistics for the new data
    click.echo(summary.report())
    if summary.failed and not summary.total_loaded:
        sys.exit(1)


def _add_plugin_commands() -> None:
    for module_name, attr in CLI_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        command: Any = getattr(module, attr, None)
        if command is not None:
            cli.add_command(command)


_add_plugin_commands()
