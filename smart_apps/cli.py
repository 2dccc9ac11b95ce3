"""``digitalfront smart ...``: register clients and users without the web UI (the only way to
create Backend Services clients)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from smart_apps.store import SmartStore

DEMO_PASSWORD = "demo-password"  # noqa: S105 - printed demo credentials for `make serve` only


def _store(database_url: str | None) -> SmartStore:
    if database_url is None:
        from digitalfront.config import Settings

        database_url = Settings().database_url
    if database_url.startswith("sqlite:///"):
        Path(database_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return SmartStore(sa.create_engine(database_url))


@click.group()
@click.option("--database-url", envvar="DIGITALFRONT_DATABASE_URL", default=None)
@click.pass_context
def smart(ctx: click.Context, database_url: str | None) -> None:
    """SMART on FHIR authorization server administration."""
    ctx.obj = {"database_url": database_url}


@smart.command("add-client")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--scope", required=True, help='space separated, e.g. "launch/patient patient/*.rs"')
@click.option(
    "--auth-method",
    type=click.Choice(["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]),
    default="none",
)
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False))
@click.option("--jwks-uri")
@click.option("--launch-uri", help="the app's EHR launch URL")
@click.option("--client-id", help="fixed client_id (default: random)")
@click.pass_context
def add_client(
    ctx: click.Context,
    name: str,
    redirect_uris: tuple[str, ...],
    scope: str,
    auth_method: str,
    jwks_file: str | None,
    jwks_uri: str | None,
    launch_uri: str | None,
    client_id: str | None,
) -> None:
    """Register an app; Backend Services: --auth-method private_key_jwt --jwks-file keys.json --scope system/*.rs."""
    jwks = json.loads(Path(jwks_file).read_text()) if jwks_file else None
    try:
        row = _store(ctx.obj["database_url"]).add_client(
            name,
            list(redirect_uris),
            scope,
            auth_method,
            jwks=jwks,
            jwks_uri=jwks_uri,
            launch_uri=launch_uri,
            client_id=client_id,
        )
    except (ValueError, sa.exc.IntegrityError) as e:
        raise click.ClickException(str(e).splitlines()[0]) from e
    out: dict[str, Any] = {k: row[k] for k in ("client_id", "client_name", "auth_method", "grant_types", "scope")}
    if "client_secret" in row:
        out["client_secret"] = row["client_secret"]
    click.echo(json.dumps(out, indent=2))


@smart.command("add-user")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--fhir-user", required=True, help="Practitioner/123 or Patient/456")
@click.option("--display", default="")
@click.pass_context
def add_user(ctx: click.Context, username: str, password: str, fhir_user: str, display: str) -> None:
    """Create (or replace) a login linked to a Practitioner or Patient."""
    if not fhir_user.startswith(("Practitioner/", "Patient/", "RelatedPerson/", "Person/")):
        raise click.ClickException("--fhir-user must reference a Practitioner, Patient, RelatedPerson or Person")
    _store(ctx.obj["database_url"]).add_user(username, password, fhir_user, display)
    click.echo(f"user {username} -> {fhir_user}")


@smart.command("list-clients")
@click.pass_context
def list_clients(ctx: click.Context) -> None:
    for c in _store(ctx.obj["database_url"]).list_clients():
        click.echo(f"{c['client_id']}\t{c['auth_method']}\t{c['client_name']}\t{c['scope']}")


def ensure_demo(
    store: SmartStore, patient: str, practitioner: str, redirect_uri: str = "http://localhost:9090/index.html"
) -> str:
    """Create (idempotently) the demo app and users; returns the lines ``make serve`` prints."""
    if store.get_client("demo-app") is None:
        store.add_client(
            "Demo app",
            [redirect_uri],
            "openid fhirUser launch launch/patient launch/encounter "
            "offline_access online_access patient/*.rs user/*.rs",
            "none",
            client_id="demo-app",
            launch_uri=redirect_uri.rsplit("/", 1)[0] + "/launch.html",
        )
    store.add_user("demo-patient", DEMO_PASSWORD, f"Patient/{patient}", "Demo Patient")
    store.add_user("demo-clinician", DEMO_PASSWORD, f"Practitioner/{practitioner}", "Demo Clinician")
    return (
        "SMART demo: client_id=demo-app (public, PKCE S256)\n"
        f"  users: demo-patient / {DEMO_PASSWORD} (Patient/{patient}), "
        f"demo-clinician / {DEMO_PASSWORD} (Practitioner/{practitioner}); EHR page: /ehr"
    )


@smart.command("demo")
@click.option("--patient", default="example", help="Patient id the demo patient user is linked to")
@click.option("--practitioner", default="example", help="Practitioner id the demo clinician is linked to")
@click.option("--redirect-uri", default="http://localhost:9090/index.html")
@click.pass_context
def demo(ctx: click.Context, patient: str, practitioner: str, redirect_uri: str) -> None:
    """Create (idempotently) a demo public app and two demo users, and print them."""
    click.echo(ensure_demo(_store(ctx.obj["database_url"]), patient, practitioner, redirect_uri))
