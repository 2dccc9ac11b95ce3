"""Mutation fuzzing of the v2-to-FHIR path through the real stack: the IG's sample messages and the suite's
own, mutated (fields emptied or filled with odd values, delimiters and escapes inserted, segments dropped or
repeated, versions and line ends changed), each ingested as a sender would. Whatever arrives, the answer is
an ACK code (AA/AE/AR, CA/CE/CR), the message is stored with a final status, and the mapper never hands the FHIR core a
resource the core finds invalid (a 400 there means the mapper, not the sender, got it wrong: each kind this
found is fixed and has its own test: timestamps, OBX-5 TM/empty values, ED without data, identifier escapes,
assigning authorities with spaces)."""

from __future__ import annotations

import random

import pytest

from interfaces.service import pipeline_for
from tests.integration.interfaces.test_group_commit import oru
from tests.integration.interfaces.test_through_router import adt
from tests.unit.interfaces.hl7_testkit import ig_messages

MUTATIONS = 1000
ODD_FIELDS = [b"", b"x" * 300, b"99999999999999999999", b"2024-13-45", b"^^^^", b"-1", b"1e400", b"NaN", b"20241301",
              b"19000229", b"2024022930", b"A&B&C^D", b"\\E\\", b"  ", b"12,34", b"a\\F\\b", b"&&&", b"~~~"]
INSERTS = [b"\\X0D\\", b"\\F\\", b"\\E\\", b"\\H\\", b"\\Z99\\", b"\\", b"\\X\\", b"\\XZZ\\", b"&&&&", b"~~~",
           b"\xff\xfe", b"\x00", b",", b"$"]


def mutate(rnd: random.Random, message: bytes) -> bytes:
    m = bytearray(message)
    for _ in range(rnd.randint(1, 6)):
        op, i = rnd.randrange(8), rnd.randrange(len(m) + 1)
        segments = bytes(m).split(b"\r")
        if op == 0:
            del m[i:i + rnd.randint(1, 20)]
        elif op == 1:
            m[i:i] = bytes([rnd.choice(b"|^~\\&\r\n")]) * rnd.randint(1, 4)
        elif op == 2:
            m[i:i] = rnd.choice(INSERTS)
        elif op == 3:
            k = rnd.randrange(len(segments))
            segments.insert(k, segments[k])
            m = bytearray(b"\r".join(segments))
        elif op == 4 and len(segments) > 1:
            del segments[rnd.randrange(1, len(segments))]
            m = bytearray(b"\r".join(segments))
        elif op == 5:
            k = rnd.randrange(len(segments))
            fields = segments[k].split(b"|")
            fields[rnd.randrange(len(fields))] = rnd.choice(ODD_FIELDS)
            segments[k] = b"|".join(fields)
            m = bytearray(b"\r".join(segments))
        elif op == 6:
            m = bytearray(bytes(m).replace(b"2.5.1", rnd.choice([b"2.3", b"2.8", b"9.9", b""]), 1))
        else:
            m = bytearray(bytes(m).replace(b"\r", rnd.choice([b"\n", b"\r\n"])))
    return bytes(m)


def with_control_id(message: bytes, control_id: str) -> bytes:
    msh, _, rest = message.partition(b"\r")
    fields = msh.split(b"|")
    fields[9] = control_id.encode()  # MSH-10 (fields[1] is MSH-2)
    return b"|".join(fields) + b"\r" + rest


@pytest.fixture
def services(services_factory):
    return services_factory(hl7_workers=0)  # SQLite; the writer maps (no worker processes to start)


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_messages_get_an_ack_a_final_status_and_never_invalid_fhir(services, seed):
    p = pipeline_for(services)
    seeds = [m.encode() for m in ig_messages().values()]
    seeds += [oru("fz-1"), adt("A01", "fz-2"), adt("A08", "fz-3"), adt("A40", "fz-4")]
    rnd = random.Random(seed)
    codes: dict[str, int] = {}
    invalid = []
    for n in range(MUTATIONS):
        raw = mutate(rnd, with_control_id(rnd.choice(seeds), f"fz-{seed}-{n}"))  # not a duplicate of the last one
        result = p.ingest(raw, "fuzz")
        codes[result.ack_code] = codes.get(result.ack_code, 0) + 1
        assert result.ack_code in ("AA", "AE", "AR", "CA", "CE", "CR"), raw  # (MSH-15/16 may ask for no ACK frame)
        stored = p.store.get(result.message_id)
        assert stored is not None and stored.status != "received", raw
        if stored.status == "error" and (stored.outcome or {}).get("status") == 400:
            invalid.append((stored.outcome["error"], raw[:300]))
    assert not invalid, invalid[:5]
    assert codes.get("AA", 0) > MUTATIONS / 5 and codes.get("AR", 0) + codes.get("CR", 0) > 0  # both kinds seen
