"""The CDS-client side of JWT auth: make keys and sign the bearer a CDS client sends.

Used by ``digitalfront cds token`` (for curl), the benchmark and the tests; an EHR
does the same with its own key.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

Key = ECKey | RSAKey


def generate_key(alg: str = "ES384", kid: str | None = None) -> Key:
    """A private key for ES384 (P-384) or RS384 (RSA 2048)."""
    params = {"kid": kid or uuid.uuid4().hex[:16], "alg": alg, "use": "sig"}
    if alg == "ES384":
        return ECKey.generate_key("P-384", parameters=params)  # type: ignore[arg-type]
    if alg == "RS384":
        return RSAKey.generate_key(2048, parameters=params)  # type: ignore[arg-type]
    raise ValueError("alg must be ES384 or RS384")


def public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def sign(key: Key, iss: str, aud: str, *, alg: str | None = None, jku: str | None = None,
         ttl: int = 300, jti: str | None = None, now: int | None = None, **extra: Any) -> str:
    """A CDS Hooks client JWT for one call to ``aud`` (the exact URL called)."""
    alg = alg or ("ES384" if isinstance(key, ECKey) else "RS384")
    issued = int(time.time()) if now is None else now
    header: dict[str, Any] = {"alg": alg, "typ": "JWT", "kid": key.kid}
    if jku:
        header["jku"] = jku
    claims = {"iss": iss, "aud": aud, "exp": issued + ttl, "iat": issued, "jti": jti or uuid.uuid4().hex,
              **extra}
    return jwt.encode(header, claims, key, algorithms=[alg])
