"""MLLP client and HL7 batch-file reading (FHS/BHS ... BTS/FTS wrappers, one message per MSH group)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

from interfaces.er7 import split_segments
from interfaces.framing import FrameDecoder, frame
from interfaces.parsing import decode_with_charset

BATCH_SEGMENTS = ("FHS", "BHS", "BTS", "FTS")


def split_batch(text: str) -> list[str]:
    """Messages of a file: batch header/trailer segments dropped, a new message at every MSH."""
    messages: list[list[str]] = []
    for seg in split_segments(text.lstrip("\ufeff")):
        name = seg[:3]
        if name in BATCH_SEGMENTS:
            continue
        if name == "MSH" or not messages:
            messages.append([])
        messages[-1].append(seg)
    return ["\r".join(m) + "\r" for m in messages if m and m[0].startswith("MSH")]


def iter_files(paths: list[str]) -> Iterator[Path]:
    """Files in the order given; directories expand to their regular files sorted by name."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(x for x in p.rglob("*") if x.is_file())
        else:
            yield p


def is_batch(raw: bytes) -> bool:
    """Whether ``raw`` opens with a batch header (FHS or BHS) rather than a message."""
    return raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:3] in (b"FHS", b"BHS")


def batch_messages(raw: bytes) -> list[bytes]:
    """The messages of a batch (or of a file of messages), each in the batch's own character set (MSH-18
    still has to describe the bytes a receiver gets, so they are never transcoded)."""
    text, codec = decode_with_charset(raw)
    return [m.encode(codec, errors="replace") for m in split_batch(text)]


def read_messages(path: Path) -> list[bytes]:
    """The file's messages (``batch_messages``)."""
    return batch_messages(path.read_bytes())


class MllpClient:
    """A blocking MLLP client; ``send`` waits for ``expect`` ACK frames (2 for enhanced CA + AA)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2575,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        self.sock: socket.socket = ssl_context.wrap_socket(sock, server_hostname=host) if ssl_context else sock
        self.decoder = FrameDecoder()
        self._pending: list[bytes] = []

    def send(self, message: bytes, expect: int = 1) -> list[bytes]:
        self.sock.sendall(frame(message))
        return self.receive(expect)

    def receive(self, count: int = 1) -> list[bytes]:
        while len(self._pending) < count:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed before the ACK arrived")
            self._pending.extend(self.decoder.feed(data))
        out, self._pending = self._pending[:count], self._pending[count:]
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK ('' if there is no MSA)."""
    for seg in split_segments(ack.decode("utf-8", "replace")):
        if seg.startswith("MSA"):
            return seg[4:6]
    return ""
