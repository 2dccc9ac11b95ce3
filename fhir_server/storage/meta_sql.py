"""``$meta`` at the type and system level: the tags, security labels and profiles in use, from index rows.

Every current resource's ``meta.tag``/``meta.security`` are ``idx_token`` rows of ``_tag``/``_security`` and
its ``meta.profile`` are ``idx_uri`` rows of ``_profile`` (a deleted resource's rows go with it), so one
DISTINCT per table answers without reading a body. Displays are not indexed, so tags come back without them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from fhir_server.model import JsonDict
from fhir_server.search.extract import identity
from fhir_server.storage import tables as T


def meta_in_use(conn: Connection, resource_types: list[str]) -> JsonDict:
    out: JsonDict = {}
    tok = T.idx_token
    for element, param in (("tag", "_tag"), ("security", "_security")):
        ids = [identity(rt, param) for rt in resource_types]
        rows = conn.execute(select(tok.c.system, tok.c.value).where(tok.c.hash_identity.in_(ids)).distinct()).all()
        codings: list[dict[str, Any]] = [{k: v for k, v in (("system", s), ("code", c)) if v}
                                         for s, c in sorted(rows, key=lambda r: (r[0] or "", r[1] or ""))]
        if codings:
            out[element] = codings
    uri = T.idx_uri
    ids = [identity(rt, "_profile") for rt in resource_types]
    profiles = sorted(u for (u,) in conn.execute(select(uri.c.uri).where(uri.c.hash_identity.in_(ids)).distinct()))
    if profiles:
        out["profile"] = profiles
    return out
