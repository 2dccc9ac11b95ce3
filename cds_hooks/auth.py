"""JWT bearer authentication of CDS clients (CDS Hooks 2.0 "Trusting CDS Clients").

Each trusted EHR is an ``iss`` with an allowlist of ``jku`` URLs and/or a
configured JWKS. Only ES384 and RS384 are accepted (never ``none`` or HMAC);
``aud`` must be the URL called; ``exp``/``iat`` are checked; a ``jti`` is
accepted once. Failures raise ``AuthError`` whose reason is logged, never sent.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from cds_hooks.errors import AuthError

log = logging.getLogger(__name__)
ALGORITHMS = ("ES384", "RS384")
MAX_LIFETIME_S = 300  # spec: exp no more than 5 minutes after iat
LEEWAY_S = 60


@dataclass
class TrustedClient:
    iss: str
    jku: list[str] = field(default_factory=list)
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrustedClient:
        jku = d.get("jku") or []
        return cls(iss=d["iss"], jku=[jku] if isinstance(jku, str) else list(jku), jwks=d.get("jwks"),
                   jwks_url=d.get("jwks_url"))


class JtiStore(Protocol):
    def first_use(self, iss: str, jti: str, exp: int) -> bool:
        """True the first time a (iss, jti) is seen; False for a replay."""
        ...


class MemoryJtiStore:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def first_use(self, iss: str, jti: str, exp: int) -> bool:
        now = int(time.time())
        with self._lock:
            if len(self._seen) > 10000:
                self._seen = {k: v for k, v in self._seen.items() if v > now - LEEWAY_S}
            if (iss, jti) in self._seen:
                return False
            self._seen[(iss, jti)] = exp
            return True


class JwksCache:
    """JWKS per URL, cached; an unknown ``kid`` refetches at most every ``min_refresh`` seconds."""

    def __init__(self, ttl: float = 600.0, min_refresh: float = 30.0, timeout: float = 3.0) -> None:
        self.ttl, self.min_refresh, self.timeout = ttl, min_refresh, timeout
        self._cache: dict[str, tuple[KeySet, float]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, kid: str | None) -> KeySet:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(url)
        if hit is not None:
            keys, at = hit
            fresh = now - at < self.ttl
            known = kid is None or any(k.kid == kid for k in keys.keys)
            if fresh and (known or now - at < self.min_refresh):
                return keys
        try:
            r = requests.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
            r.raise_for_status()
            keys = KeySet.import_key_set(r.json())
        except (requests.RequestException, ValueError, JoseError) as exc:
            raise AuthError(f"cannot fetch JWKS from {url}: {exc}") from exc
        with self._lock:
            self._cache[url] = (keys, now)
        return keys


def _b64json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


class ClientAuthenticator:
    def __init__(self, clients: list[TrustedClient], jti_store: JtiStore | None = None,
                 allow_unsigned: bool = False, jwks_cache: JwksCache | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.clients = {c.iss: c for c in clients}
        self.jti_store = jti_store or MemoryJtiStore()
        self.allow_unsigned = allow_unsigned
        self.jwks = jwks_cache or JwksCache()
        self.clock = clock
        if allow_unsigned:
            log.warning("CDS Hooks development mode: calls without a JWT are accepted")

    def authenticate(self, authorization: str | None, audiences: list[str]) -> dict[str, Any]:
        """Claims of a valid token; raises AuthError. ``audiences``: the URL(s) this call was made to."""
        if not authorization:
            if self.allow_unsigned:
                log.warning("CDS Hooks call accepted without a JWT (development mode)")
                return {}
            raise AuthError("no Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("not a bearer token")
        parts = token.strip().split(".")
        if len(parts) != 3:
            raise AuthError("not a compact JWS")
        try:
            header, unverified = _b64json(parts[0]), _b64json(parts[1])
        except (ValueError, UnicodeDecodeError) as exc:
            raise AuthError("undecodable JWT") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthError(f"alg {alg!r} not allowed")
        if header.get("typ") not in (None, "JWT"):
            raise AuthError("typ must be JWT")
        client = self.clients.get(str(unverified.get("iss")))
        if client is None:
            raise AuthError(f"untrusted iss {unverified.get('iss')!r}")
        keys = self._keys(client, header)
        try:
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError) as exc:
            raise AuthError(f"signature: {exc}") from exc
        claims = dict(decoded.claims)
        self._check_claims(claims, client, audiences)
        return claims

    def _keys(self, client: TrustedClient, header: dict[str, Any]) -> KeySet:
        jku = header.get("jku")
        kid = header.get("kid")
        if jku is not None:
            if jku not in client.jku:
                raise AuthError(f"jku {jku!r} not allowlisted for {client.iss}")
            return self.jwks.get(jku, kid)
        if client.jwks is not None:
            try:
                return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError) as exc:
                raise AuthError(f"configured JWKS unusable: {exc}") from exc
        if client.jwks_url:
            return self.jwks.get(client.jwks_url, kid)
        raise AuthError(f"no keys configured for {client.iss}")

    def _check_claims(self, claims: dict[str, Any], client: TrustedClient, audiences: list[str]) -> None:
        now = int(self.clock())
        if claims.get("iss") != client.iss:
            raise AuthError("iss mismatch")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        wanted = {a.rstrip("/") for a in audiences}
        if not any(isinstance(a, str) and a.rstrip("/") in wanted for a in auds):
            raise AuthError(f"aud {aud!r} is not {sorted(wanted)}")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise AuthError("exp and iat are required numbers")
        if exp < now - LEEWAY_S:
            raise AuthError("token expired")
        if iat > now + LEEWAY_S:
            raise AuthError("iat in the future")
        if exp - iat > MAX_LIFETIME_S + LEEWAY_S:
            raise AuthError("token lifetime over 5 minutes")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf > now + LEEWAY_S:
            raise AuthError("token not yet valid")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthError("jti is required")
        if not self.jti_store.first_use(client.iss, jti, int(exp)):
            raise AuthError("jti replayed")
