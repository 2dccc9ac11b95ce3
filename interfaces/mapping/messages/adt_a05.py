"""ADT_A05 structure: A05 pre-admit, A14 pending admit, A28 add person, A31 update person."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.messages.common import adt_clinical, patient_visit

STRUCTURE = "ADT_A05"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pv = patient_visit(msg, b, visit=b.header.trigger_event in ("A05", "A14"))
    adt_clinical(msg, b, pv)
