"""ADT_A39 structure, A40 merge patient: PID-3 survives, MRG-1 is retired.

We link, we do not move references: the surviving Patient gets
``link.type = replaces`` and the retired one is patched (FHIRPath Patch in the
same transaction, so its other data stays) to ``active = false`` with
``link.type = replaced-by``.  Clinical resources keep pointing at the record
they were written to; clients follow Patient.link (see docs/hl7v2.md).
"""

from __future__ import annotations

import uuid

from interfaces.er7 import Er7Message
from interfaces.mapping.builder import BundleBuilder, MappingError, identifier_query
from interfaces.mapping.datatypes import cx
from interfaces.mapping.messages.common import require
from interfaces.mapping.segments.pid import map_pid

STRUCTURE = "ADT_A39"


def map_message(msg: Er7Message, b: BundleBuilder) -> None:
    pid = require(msg, "PID")
    mrg = require(msg, "MRG")
    prior = cx(mrg.field_value(1)) if mrg.field_value(1) else None
    if prior is None:
        raise MappingError("MRG-1 (prior patient identifier list) is required", "MRG^1^1")
    survivor_ref, key = map_pid(pid, b)
    prior.setdefault("system", key.get("system"))
    if prior.get("system") == key.get("system") and prior["value"] == key["value"]:
        raise MappingError("MRG-1 names the surviving patient itself", "MRG^1^1", ("205", "Duplicate key identifier"))
    prior_url = f"Patient?{identifier_query(prior)}"
    survivor = b.entries[-1]["resource"]
    survivor["link"] = [
        {"other": {"identifier": prior, "display": f"merged record {prior['value']}"}, "type": "replaces"}
    ]
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.active"},
                    {"name": "value", "valueBoolean": False},
                ],
            },
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "link"},
                    {
                        "name": "value",
                        "part": [
                            {"name": "other", "valueReference": {"reference": survivor_ref}},
                            {"name": "type", "valueCode": "replaced-by"},
                        ],
                    },
                ],
            },
        ],
    }
    b.entries.append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": patch,
            "request": {"method": "PATCH", "url": prior_url},
        }
    )
