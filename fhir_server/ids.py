"""Server-assigned logical ids: time-ordered UUIDs (RFC 9562 version 7).

Random (v4) ids land at random places in every index keyed by id (the unique
``(res_type, fhir_id)`` key, the reference target indexes), so each insert into
a large database dirties a different B-tree page. Ids that sort by creation
time append instead, which keeps ingest into a million-resource database as
fast as into an empty one. They are still opaque 36-character UUIDs.
"""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_id() -> str:
    """A UUIDv7 string; ids made by one process are strictly increasing (12-bit counter per millisecond)."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _seq = ms, int.from_bytes(os.urandom(2), "big") & 0x1FF  # leave room to count up
        else:
            _seq += 1
            if _seq > 0xFFF:  # counter spent within one millisecond: borrow the next one
                _last_ms, _seq = _last_ms + 1, 0
            ms = _last_ms
        seq = _seq
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
