"""OML_O21 (lab order): one ServiceRequest per ORC/OBR order group, keyed on the placer number."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.messages.common import map_order_groups

STRUCTURE = "OML_O21"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    map_order_groups(msg, b)
