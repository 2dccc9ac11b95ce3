"""v2 -> FHIR mapping: one module per message structure (``messages/``), one per segment
(``segments/``), shared datatype converters (``datatypes``), IG ConceptMaps (``codes``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder, MappingError
from interfaces.mapping.messages import (
    adt_a01,
    adt_a02,
    adt_a03,
    adt_a05,
    adt_a06,
    adt_a09,
    adt_a39,
    mdm_t02,
    oml_o21,
    orm_o01,
    oru_r01,
    siu_s12,
    vxu_v04,
)
from interfaces.parsing import Header

Mapper = Callable[[Er7Message, BundleBuilder], None]

MAPPERS: dict[str, Mapper] = {
    m.STRUCTURE: m.map_message
    for m in (
        adt_a01,
        adt_a02,
        adt_a03,
        adt_a05,
        adt_a06,
        adt_a09,
        adt_a39,
        oru_r01,
        orm_o01,
        oml_o21,
        vxu_v04,
        siu_s12,
        mdm_t02,
    )
}
MAPPERS["ADT_A12"] = adt_a09.map_message  # cancel transfer shares the A09 shape


class UnsupportedMessage(Exception):
    """No mapper for this structure (answered AR with HL7 error 200/201)."""


def map_to_bundle(msg: Er7Message, header: Header, *, store_id: int | None = None) -> dict[str, Any]:
    """Map one parsed message to a transaction Bundle."""
    mapper = MAPPERS.get(header.structure)
    if mapper is None:
        raise UnsupportedMessage(f"no mapping for {header.message_type} (structure {header.structure or '?'})")
    b = BundleBuilder(header)
    mapper(msg, b)
    return b.bundle(store_id=store_id)


__all__ = ["MAPPERS", "MappingError", "UnsupportedMessage", "map_to_bundle"]
