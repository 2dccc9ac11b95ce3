"""ADT_A06 structure: A06/A07 change outpatient<->inpatient."""

from __future__ import annotations

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder
from interfaces.mapping.messages.common import adt_clinical, patient_visit

STRUCTURE = "ADT_A06"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pv = patient_visit(msg, b, visit=True)
    adt_clinical(msg, b, pv)
