"""ADT_A02 structure: A02 transfer (Encounter location and status in-progress)."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.messages.common import adt_clinical, patient_visit

STRUCTURE = "ADT_A02"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pv = patient_visit(msg, b, visit=True)
    adt_clinical(msg, b, pv)
