"""The authorization server's tables on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from smart_apps.store import SmartStore, hash_password, verify_password


def _pg_engine() -> Iterator[sa.Engine]:
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT")
    name = f"smart_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as e:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {e.__class__.__name__}")
    engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    yield engine
    engine.dispose()
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path) -> Iterator[SmartStore]:
    if request.param == "sqlite":
        yield SmartStore(sa.create_engine(f"sqlite:///{tmp_path / 's.db'}"))
    else:
        yield from (SmartStore(e) for e in _pg_engine())


def test_password_hash_is_salted_scrypt():
    a, b = hash_password("s3cret"), hash_password("s3cret")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("s3cret", a) and not verify_password("S3cret", a)
    assert not verify_password("s3cret", "plain-text") and not verify_password("x", "md5$1$2$3$4$5")


def test_users(store):
    store.add_user("doc", "pw", "Practitioner/1", "Dr One")
    assert store.authenticate_user("doc", "pw")["fhir_user"] == "Practitioner/1"
    assert store.authenticate_user("doc", "nope") is None and store.authenticate_user("nobody", "pw") is None
    store.add_user("doc", "pw2", "Practitioner/1")
    assert store.authenticate_user("doc", "pw") is None and store.authenticate_user("doc", "pw2")


def test_clients_and_secret_digest(store):
    row = store.add_client("Conf", ["https://app/cb"], "patient/*.rs", "client_secret_basic")
    secret = row["client_secret"]
    got = store.get_client(row["client_id"])
    assert got["redirect_uris"] == ["https://app/cb"] and secret not in str(got)
    assert got["grant_types"] == ["authorization_code", "refresh_token"]
    with pytest.raises(ValueError):
        store.add_client("Bad", [], "system/*.rs", "private_key_jwt")
    with pytest.raises(ValueError):
        store.add_client("Bad", [], "x", "client_secret_jwt")
    backend = store.add_client("Bulk", [], "system/*.rs", "private_key_jwt", jwks_uri="https://app/jwks")
    assert backend["grant_types"] == ["client_credentials"]


def test_code_single_use(store):
    store.save_code("abc", client_id="c", username="u", redirect_uri="https://app/cb", scope="openid",
                    code_challenge="x", code_challenge_method="S256", nonce=None, context={"patient": "1"},
                    expires_at=time.time() + 60)
    assert store.get_code("abc")["context"] == {"patient": "1"}
    assert store.consume_code("abc") is True
    assert store.consume_code("abc") is False
    assert store.get_code("other") is None


def test_token_lifecycle(store):
    tid = store.save_token("acc", "ref", "c", "u", "patient/*.rs", {"patient": "1"}, 3600, 7200)
    row = store.get_access_token("acc")
    assert row["token_id"] == tid and store.access_active(row) and store.refresh_active(store.get_refresh_token("ref"))
    store.revoke(tid)
    assert not store.access_active(store.get_access_token("acc"))
    assert not store.refresh_active(store.get_refresh_token("ref"))
    tid2 = store.save_token("acc2", None, "c", None, "system/*.rs", {}, 0, None)
    assert not store.access_active(store.get_access_token("acc2")) and tid2 != tid
    assert store.get_access_token("ref") is None  # tokens are looked up by digest of their own kind


def test_jti_replay_cache(store):
    exp = time.time() + 300
    assert store.remember_jti("client", "j1", exp) is True
    assert store.remember_jti("client", "j1", exp) is False
    assert store.remember_jti("other", "j1", exp) is True


def test_keys_and_launches(store):
    kid, material = store.get_or_create_key("id_token", lambda: "m1")
    assert store.get_or_create_key("id_token", lambda: "m2") == (kid, "m1")
    launch = store.save_launch("doc", {"patient": "1"})
    assert store.get_launch(launch)["context"] == {"patient": "1"}
    expired = store.save_launch("doc", {"patient": "1"}, lifetime=-1)
    assert store.get_launch(expired) is None
