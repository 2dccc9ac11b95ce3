"""``digitalfront cds ...``: list services, mint a client JWT for curl, show card feedback counts."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def cds() -> None:
    """CDS Hooks services."""


@cds.command("services")
def services_cmd() -> None:
    """List the CDS services this server offers (id, hook, title)."""
    from cds_hooks.config import CdsConfig
    from cds_hooks.registry import discover
    from digitalfront.config import Settings

    cfg = CdsConfig.from_settings(Settings())
    for s in discover(cfg.enabled, cfg.extra_modules):
        click.echo(f"{s.id:28} {s.hook:22} {s.title}")


@cds.command("keygen")
@click.option("--alg", type=click.Choice(["ES384", "RS384"]), default="ES384", show_default=True)
@click.option("--kid", default=None)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Private JWK file to write (keep it secret).")
def keygen(alg: str, kid: str | None, out: Path) -> None:
    """Make a CDS client key pair; prints the public JWKS to put in DIGITALFRONT_CDS_CLIENTS."""
    from cds_hooks.client_jwt import generate_key, public_jwks

    key = generate_key(alg, kid)
    out.write_text(json.dumps(key.as_dict(private=True)), encoding="utf-8")
    out.chmod(0o600)
    click.echo(json.dumps(public_jwks(key)))


@cds.command("token")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--iss", required=True, help="The issuer configured as trusted (DIGITALFRONT_CDS_CLIENTS).")
@click.option("--aud", required=True, help="The exact URL you will call, e.g. http://localhost:8080/cds-services")
@click.option("--jku", default=None)
def token(key_file: Path, iss: str, aud: str, jku: str | None) -> None:
    """Sign a one-use CDS client JWT (5 minutes) for curl."""
    from joserfc.jwk import ECKey, RSAKey

    from cds_hooks.client_jwt import sign

    data = json.loads(key_file.read_text(encoding="utf-8"))
    key = ECKey.import_key(data) if data.get("kty") == "EC" else RSAKey.import_key(data)
    click.echo(sign(key, iss, aud, jku=jku))


@cds.command("feedback")
@click.option("--database-url", envvar="DIGITALFRONT_DATABASE_URL", default=None)
def feedback(database_url: str | None) -> None:
    """Accepted/overridden card counts per service."""
    import sqlalchemy as sa

    from cds_hooks.store import CdsStore
    from digitalfront.config import Settings

    store = CdsStore(sa.create_engine(database_url or Settings().database_url))
    counts = store.feedback_counts()
    if not counts:
        click.echo("no feedback yet")
    for sid, c in sorted(counts.items()):
        total = c["accepted"] + c["overridden"]
        click.echo(f"{sid:28} accepted {c['accepted']:5}  overridden {c['overridden']:5}  "
                   f"acceptance {c['accepted'] / total:.0%}")
