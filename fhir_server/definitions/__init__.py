"""The R4 type model: element definitions of every base resource and datatype.

Loaded from the compact extract that ``scripts/build_definitions.py`` generates
from the official StructureDefinitions and ships in ``data/``, so the running
server needs no FHIR package. XML mapping, ``_summary``/``_elements`` and
validation all walk the same model.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from importlib import resources
from typing import Any

from fhir_server.definitions.model import (
    FHIR_TYPE_EXT,
    PRIMITIVE_JSON,
    ElementDef,
    ExtensionDef,
    Node,
    TypeInfo,
    TypeModel,
)


def _load(name: str) -> Any:
    data = resources.files("fhir_server.definitions").joinpath("data", name).read_bytes()
    return json.loads(gzip.decompress(data))


@cache
def get_model() -> TypeModel:
    """The process-wide R4 model (immutable after load, safe to share across threads)."""
    ext = _load("extensions.json.gz")
    return TypeModel(_load("types.json.gz"), _load("valuesets.json.gz")["valuesets"], ext["extensions"],
                     ext["searchParameters"])


__all__ = ["FHIR_TYPE_EXT", "PRIMITIVE_JSON", "ElementDef", "ExtensionDef", "Node", "TypeInfo", "TypeModel",
           "get_model"]
