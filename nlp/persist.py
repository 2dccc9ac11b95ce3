"""Writing extraction output through the FHIR router, replacing a note's earlier output (idempotent).

One transaction deletes every resource tagged with the note's source tag and
creates the new ones, so a re-run never duplicates and a reader never sees a
half-replaced set.
"""

from __future__ import annotations

from typing import Any

from nlp.fhir_mapping import OUTPUT_TYPES, SOURCE_TAG_SYSTEM


def previous_output(client: Any, note_ref: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for rtype in OUTPUT_TYPES:
        for res in client.search(rtype, [("_tag", f"{SOURCE_TAG_SYSTEM}|{note_ref}")]):
            found.append((rtype, res["id"]))
    return found


def replace_output(client: Any, bundle: dict[str, Any], note_ref: str) -> dict[str, Any]:
    """Run the transaction; ``bundle`` must come from ``to_bundle(..., bundle_type="transaction")``."""
    deletes = [{"request": {"method": "DELETE", "url": f"{rtype}/{rid}"}}
               for rtype, rid in previous_output(client, note_ref)]
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": deletes + list(bundle.get("entry", []))}
    if not tx["entry"]:
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": []}
    result: dict[str, Any] = client.transaction(tx)
    return result
