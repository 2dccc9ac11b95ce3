"""ADT_A09 structure as used by A11 (cancel admit): the Encounter becomes cancelled."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.messages.common import adt_clinical, patient_visit

STRUCTURE = "ADT_A09"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pv = patient_visit(msg, b)
    adt_clinical(msg, b, pv)
