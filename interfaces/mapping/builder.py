"""Builds the one transaction Bundle a message becomes.

Entries are keyed by a business identifier so that a re-sent message updates
instead of duplicating: ``PUT Type?identifier=system|value`` (conditional
update) for resources the message owns, ``POST`` + ``ifNoneExist`` for ones it
only references (a Practitioner named in PV1-7 must not be overwritten by every
ADT).  ``mode="id"`` is for resources only this interface writes and whose
identity is derived from the message (OBX results): ``PUT Type/<id>`` with the id
a hash of the key, so a re-send updates the same resource without the search a
conditional update costs (10-30 per ORU).  References inside the Bundle use ``urn:uuid`` fullUrls, resolved by the
transaction processor.  One Provenance per message targets every entry.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fhir_server.search.values import escape
from interfaces.parsing import Header

JsonDict = dict[str, Any]
MESSAGE_ID_SYSTEM = "urn:digitalfront:hl7v2:message"
# The store id a message is mapped with before the store has given it one (store ids start at 1): the
# pipeline's workers map a message while the writer stores it, and ``stamp_store_id`` puts the real one in.
PENDING_STORE_ID = 0


class MappingError(Exception):
    """The message parsed but cannot be mapped (answered AE; kept in the store for replay)."""

    def __init__(self, message: str, location: str = "", code: tuple[str, str] = ("101", "Required field missing")):
        super().__init__(message)
        self.location = location
        self.code = code


def derived_id(resource_type: str, ident: JsonDict) -> str:
    """A stable FHIR id (``[A-Za-z0-9-.]{1,64}``) for a business identifier: same key, same resource."""
    system, value = str(ident.get("system", "")), str(ident["value"])
    basis = f"{resource_type}|{system}|{value}"
    if "|" in system or "|" in value:  # ("a", "b|c") and ("a|b", "c") must not share a record; the plain
        basis = json.dumps([resource_type, system, value])  # basis stays as it was for every other id
    return "v2-" + hashlib.sha256(basis.encode()).hexdigest()[:40]


def identifier_query(ident: JsonDict, *also: JsonDict) -> str:
    """``identifier=system|value`` for a conditional write, with FHIR's search escapes: a ``,`` or ``|`` in a v2
    identifier (``\\F\\`` unescapes to ``|``) must not turn the lookup into an OR that can match another
    patient's record. ``also``: more identifiers of the same record, any of which may match (a real OR)."""
    tokens = []
    for i in (ident, *also):
        system, value = i.get("system"), escape(str(i["value"]))
        tokens.append(f"{escape(system)}|{value}" if system else value)
    return "identifier=" + quote(",".join(tokens), safe="|:/.")


@dataclass
class BundleBuilder:
    header: Header
    message_ref: str = ""  # "hl7v2-message/<store id>" when known
    entries: list[JsonDict] = field(default_factory=list)
    _by_key: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def add(self, resource: JsonDict, *, key: JsonDict | None = None, mode: str = "update",
            also: tuple[JsonDict, ...] = ()) -> str:
        """Add ``resource`` and return its urn:uuid reference; the same key twice reuses the first entry.
        ``also``: other identifiers of the record the conditional lookup accepts instead of ``key``."""
        rtype = resource["resourceType"]
        if key is not None:
            dedup = (rtype, str(key.get("system", "")), str(key["value"]))
            if dedup in self._by_key:
                return self._by_key[dedup]
        full_url = f"urn:uuid:{uuid.uuid4()}"
        request: JsonDict
        if key is None:
            request = {"method": "POST", "url": rtype}
        elif mode == "id":
            resource["id"] = derived_id(rtype, key)
            request = {"method": "PUT", "url": f"{rtype}/{resource['id']}"}
        elif mode == "create":
            request = {"method": "POST", "url": rtype, "ifNoneExist": identifier_query(key, *also)}
        else:
            request = {"method": "PUT", "url": f"{rtype}?{identifier_query(key, *also)}"}
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        if key is not None:
            self._by_key[(rtype, str(key.get("system", "")), str(key["value"]))] = full_url
        return full_url

    def find(self, resource_type: str) -> list[JsonDict]:
        return [e["resource"] for e in self.entries if e["resource"]["resourceType"] == resource_type]

    def bundle(self, *, store_id: int | None = None) -> JsonDict:
        """The transaction Bundle, with one Provenance per message targeting every produced resource."""
        h = self.header
        entries = list(self.entries)
        if entries:
            what: JsonDict = {
                "identifier": {
                    "system": MESSAGE_ID_SYSTEM,
                    "value": str(store_id) if store_id is not None else h.control_id,
                },
                "display": f"{h.message_type} {h.control_id} from {h.sender}",
            }
            prov: JsonDict = {
                "resourceType": "Provenance",
                "target": [{"reference": e["fullUrl"]} for e in entries if e["request"]["method"] != "PATCH"],
                "recorded": _now(),
                "activity": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                            "code": "UPDATE" if h.trigger_event == "A08" else "CREATE",
                        }
                    ]
                },
                "agent": [
                    {
                        "type": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                    "code": "author",
                                }
                            ]
                        },
                        "who": {"display": h.sending_application or "unknown sender"},
                    },
                    {
                        "type": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                    "code": "assembler",
                                }
                            ]
                        },
                        "who": {"display": "DigitalFront HL7v2 interface"},
                    },
                ],
                "entity": [{"role": "source", "what": what}],
            }
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": prov,
                    "request": {"method": "POST", "url": "Provenance"},
                }
            )
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def stamp_store_id(bundle: JsonDict, store_id: int) -> int | None:
    """Put ``store_id`` into the Provenance of a Bundle mapped with ``PENDING_STORE_ID`` (changed in place);
    the index of the entry it changed, or None when there was nothing pending."""
    for i, e in enumerate(bundle.get("entry") or []):
        res = e.get("resource") or {}
        if res.get("resourceType") != "Provenance":
            continue
        for entity in res.get("entity") or []:
            ident = (entity.get("what") or {}).get("identifier") or {}
            if ident.get("system") == MESSAGE_ID_SYSTEM and ident.get("value") == str(PENDING_STORE_ID):
                ident["value"] = str(store_id)
                return i
    return None
