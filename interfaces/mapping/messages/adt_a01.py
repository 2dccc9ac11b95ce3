"""ADT_A01 structure: A01 admit, A04 register, A08 update, A13 cancel discharge."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.messages.common import adt_clinical, patient_visit

STRUCTURE = "ADT_A01"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pv = patient_visit(msg, b)
    adt_clinical(msg, b, pv)
