"""MLLP framing (VT message FS CR) with an incremental decoder.

The decoder is fed whatever a socket read returns: frames split across reads,
several frames in one read, and bytes outside a frame (line noise, keep-alives)
are all normal on hospital networks.  Bytes outside VT..FS are dropped and
counted; a frame larger than ``max_size`` is discarded whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VT = b"\x0b"
FS = b"\x1c"
CR = b"\x0d"
END = FS + CR


def frame(payload: bytes) -> bytes:
    return VT + payload + END


class FrameTooLarge(Exception):
    pass


@dataclass
class FrameDecoder:
    max_size: int = 16 * 1024 * 1024
    _buf: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    discarded_bytes: int = 0
    oversized_frames: int = 0
    _skipping: bool = False

    def feed(self, data: bytes) -> list[bytes]:
        """Return the complete payloads found so far; keeps a partial frame buffered."""
        out: list[bytes] = []
        i = 0
        n = len(data)
        while i < n:
            if not self._in_frame:
                start = data.find(VT, i)
                if start < 0:
                    self.discarded_bytes += n - i
                    return out
                self.discarded_bytes += start - i
                self._in_frame = True
                self._skipping = False
                self._buf.clear()
                i = start + 1
                continue
            end = data.find(FS, i)
            chunk_end = n if end < 0 else end
            if not self._skipping:
                # A VT inside a frame means the previous frame was cut off: restart there.
                restart = data.rfind(VT, i, chunk_end)
                if restart >= 0:
                    self.discarded_bytes += len(self._buf) + (restart - i)
                    self._buf.clear()
                    i = restart + 1
                    continue
                self._buf += data[i:chunk_end]
                if len(self._buf) > self.max_size:
                    self.oversized_frames += 1
                    self._skipping = True
                    self._buf.clear()
            if end < 0:
                return out
            if not self._skipping:
                out.append(bytes(self._buf))
            self._buf.clear()
            self._in_frame = False
            self._skipping = False
            i = end + 1
            if i < n and data[i : i + 1] == CR:
                i += 1
        return out

    @property
    def partial(self) -> bool:
        """True while a frame has started but not ended (a drop now loses nothing acknowledged)."""
        return self._in_frame
