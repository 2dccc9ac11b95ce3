"""Persistence of the authorization server: clients, users, codes, tokens, jti, keys, launches.

SQLAlchemy Core on our own ``MetaData`` so the tables live next to the FHIR
tables on SQLite or PostgreSQL. Secrets (client secrets, codes, tokens) are
stored only as SHA-256 digests; user passwords with scrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fhir_server.storage.engine import create_tables

metadata = sa.MetaData()

clients = sa.Table(
    "smart_client", metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("client_name", sa.String(256), nullable=False),
    sa.Column("secret_digest", sa.String(64)),
    sa.Column("auth_method", sa.String(40), nullable=False),
    sa.Column("redirect_uris", sa.Text, nullable=False, default="[]"),
    sa.Column("grant_types", sa.Text, nullable=False, default="[]"),
    sa.Column("scope", sa.Text, nullable=False, default=""),
    sa.Column("jwks", sa.Text),
    sa.Column("jwks_uri", sa.String(1024)),
    sa.Column("launch_uri", sa.String(1024)),
    sa.Column("created_at", sa.Float, nullable=False),
)
users = sa.Table(
    "smart_user", metadata,
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("fhir_user", sa.String(256), nullable=False),
    sa.Column("display", sa.String(256), nullable=False, default=""),
)
codes = sa.Table(
    "smart_code", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("redirect_uri", sa.String(1024), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("code_challenge", sa.String(128)),
    sa.Column("code_challenge_method", sa.String(10)),
    sa.Column("nonce", sa.String(256)),
    sa.Column("context", sa.Text, nullable=False, default="{}"),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False, default=False),
)
tokens = sa.Table(
    "smart_token", metadata,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("access_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("refresh_digest", sa.String(64), unique=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("username", sa.String(128)),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("context", sa.Text, nullable=False, default="{}"),
    sa.Column("issued_at", sa.Float, nullable=False),
    sa.Column("expires_in", sa.Integer, nullable=False),
    sa.Column("refresh_expires_at", sa.Float),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)
jtis = sa.Table(
    "smart_jti", metadata,
    sa.Column("issuer", sa.String(128), primary_key=True),
    sa.Column("jti", sa.String(256), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False),
)
keys = sa.Table(
    "smart_key", metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("material", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
launches = sa.Table(
    "smart_launch", metadata,
    sa.Column("launch_id", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("context", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${dk.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, dk = stored.split("$")
    except ValueError:
        return False
    if algo != "scrypt":
        return False
    test = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                          dklen=len(dk) // 2)
    return hmac.compare_digest(test.hex(), dk)


def _row(r: Any) -> dict[str, Any] | None:
    return dict(r._mapping) if r is not None else None


class SmartStore:
    """All reads/writes of the authorization server's tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine, metadata)

    # clients ---------------------------------------------------------------
    def add_client(self, client_name: str, redirect_uris: list[str], scope: str, auth_method: str,
                   grant_types: list[str] | None = None, jwks: dict[str, Any] | None = None,
                   jwks_uri: str | None = None, launch_uri: str | None = None,
                   client_id: str | None = None) -> dict[str, Any]:
        """Register a client; returns its row plus the plain ``client_secret`` for symmetric clients."""
        if auth_method not in ("none", "client_secret_basic", "client_secret_post", "private_key_jwt"):
            raise ValueError(f"unsupported token_endpoint_auth_method {auth_method!r}")
        if auth_method == "private_key_jwt" and not (jwks or jwks_uri):
            raise ValueError("private_key_jwt clients need jwks or jwks_uri")
        if grant_types is None:
            grant_types = ["client_credentials"] if auth_method == "private_key_jwt" and not redirect_uris \
                else ["authorization_code", "refresh_token"]
        client_id = client_id or secrets.token_urlsafe(16)
        secret = secrets.token_urlsafe(32) if auth_method.startswith("client_secret") else None
        row = {
            "client_id": client_id, "client_name": client_name, "auth_method": auth_method,
            "secret_digest": digest(secret) if secret else None,
            "redirect_uris": json.dumps(redirect_uris), "grant_types": json.dumps(grant_types),
            "scope": scope, "jwks": json.dumps(jwks) if jwks else None, "jwks_uri": jwks_uri,
            "launch_uri": launch_uri, "created_at": time.time(),
        }
        with self.engine.begin() as conn:
            conn.execute(clients.insert().values(**row))
        out = self.get_client(client_id) or {}
        if secret:
            out["client_secret"] = secret
        return out

    def get_client(self, client_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = _row(conn.execute(sa.select(clients).where(clients.c.client_id == client_id)).first())
        if row is None:
            return None
        row["redirect_uris"] = json.loads(row["redirect_uris"])
        row["grant_types"] = json.loads(row["grant_types"])
        row["jwks"] = json.loads(row["jwks"]) if row["jwks"] else None
        return row

    def list_clients(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.select(clients.c.client_id).order_by(clients.c.client_name))]
        return [c for c in (self.get_client(i) for i in ids) if c]

    # users -----------------------------------------------------------------
    def add_user(self, username: str, password: str, fhir_user: str, display: str = "") -> None:
        with self.engine.begin() as conn:
            conn.execute(users.delete().where(users.c.username == username))
            conn.execute(users.insert().values(username=username, password_hash=hash_password(password),
                                               fhir_user=fhir_user, display=display or username))

    def get_user(self, username: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            return _row(conn.execute(sa.select(users).where(users.c.username == username)).first())

    def authenticate_user(self, username: str, password: str) -> dict[str, Any] | None:
        user = self.get_user(username)
        if user and verify_password(password, user["password_hash"]):
            return user
        return None

    # codes -----------------------------------------------------------------
    def save_code(self, code: str, **values: Any) -> None:
        values["context"] = json.dumps(values.get("context") or {})
        with self.engine.begin() as conn:
            conn.execute(codes.insert().values(digest=digest(code), used=False, **values))

    def get_code(self, code: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = _row(conn.execute(sa.select(codes).where(codes.c.digest == digest(code))).first())
        if row:
            row["context"] = json.loads(row["context"])
        return row

    def consume_code(self, code: str) -> bool:
        """Mark a code used; False when it was already used (single use, race-safe)."""
        with self.engine.begin() as conn:
            res = conn.execute(codes.update().where(codes.c.digest == digest(code), codes.c.used.is_(False))
                               .values(used=True))
        return res.rowcount == 1

    # tokens ----------------------------------------------------------------
    def save_token(self, access_token: str, refresh_token: str | None, client_id: str, username: str | None,
                   scope: str, context: dict[str, Any], expires_in: int,
                   refresh_lifetime: int | None) -> str:
        token_id = secrets.token_hex(16)
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(tokens.insert().values(
                token_id=token_id, access_digest=digest(access_token),
                refresh_digest=digest(refresh_token) if refresh_token else None, client_id=client_id,
                username=username, scope=scope, context=json.dumps(context), issued_at=now,
                expires_in=expires_in, revoked=False,
                refresh_expires_at=(now + refresh_lifetime) if refresh_token and refresh_lifetime else None))
        return token_id

    def _token_where(self, clause: Any) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = _row(conn.execute(sa.select(tokens).where(clause)).first())
        if row:
            row["context"] = json.loads(row["context"])
        return row

    def get_access_token(self, token: str) -> dict[str, Any] | None:
        return self._token_where(tokens.c.access_digest == digest(token))

    def get_refresh_token(self, token: str) -> dict[str, Any] | None:
        return self._token_where(tokens.c.refresh_digest == digest(token))

    def revoke(self, token_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(tokens.update().where(tokens.c.token_id == token_id).values(revoked=True))

    @staticmethod
    def access_active(row: dict[str, Any] | None) -> bool:
        return bool(row) and not row["revoked"] and row["issued_at"] + row["expires_in"] > time.time()  # type: ignore[index]

    @staticmethod
    def refresh_active(row: dict[str, Any] | None) -> bool:
        if not row or row["revoked"] or not row["refresh_digest"]:
            return False
        return row["refresh_expires_at"] is None or row["refresh_expires_at"] > time.time()

    # jti replay cache ---------------------------------------------------------
    def remember_jti(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Record a client assertion's jti; False when it was seen before (replay)."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(jtis.delete().where(jtis.c.expires_at < now - 600))
            if conn.execute(sa.select(jtis.c.jti).where(jtis.c.issuer == issuer, jtis.c.jti == jti)).first():
                return False
            conn.execute(jtis.insert().values(issuer=issuer, jti=jti, expires_at=expires_at))
        return True

    # keys ------------------------------------------------------------------
    def get_or_create_key(self, purpose: str, make: Any) -> tuple[str, str]:
        """The (kid, material) for ``purpose``; ``make()`` returns new material on first use."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(keys.c.kid, keys.c.material).where(keys.c.purpose == purpose)
                               .order_by(keys.c.created_at)).first()
        if row:
            return row[0], row[1]
        kid, material = secrets.token_hex(8), make()
        try:
            with self.engine.begin() as conn:
                conn.execute(keys.insert().values(kid=kid, purpose=purpose, material=material,
                                                  created_at=time.time()))
        except sa.exc.IntegrityError:  # another process won the race
            return self.get_or_create_key(purpose, make)
        return self.get_or_create_key(purpose, make)

    # EHR launch contexts --------------------------------------------------------
    def save_launch(self, username: str, context: dict[str, Any], lifetime: int = 600) -> str:
        launch_id = secrets.token_urlsafe(16)
        with self.engine.begin() as conn:
            conn.execute(launches.insert().values(launch_id=launch_id, username=username,
                                                  context=json.dumps(context),
                                                  expires_at=time.time() + lifetime))
        return launch_id

    def get_launch(self, launch_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = _row(conn.execute(sa.select(launches).where(launches.c.launch_id == launch_id)).first())
        if not row or row["expires_at"] < time.time():
            return None
        row["context"] = json.loads(row["context"])
        return row
