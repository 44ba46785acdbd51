"""RFC 6455 frame boundaries (§5.2) found in bytes as they were read, without a protocol object.

`frame_extent` reads one frame header; the relay's server connection (wsserver.py) uses it to
take whole audio frames out of what one recv brought, and `FrameReader` (whole frames as
(opcode, fin, payload) tuples, unmasked) is the benchmarks' sink and load generator's parser.
Nothing here checks the protocol (reserved bits, control-frame rules, UTF-8): the relay hands every
frame but a plain audio frame to websockets' protocol object, which does.
"""
from __future__ import annotations

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["frame_extent", "FrameReader", "apply_mask"]


def frame_extent(buf, pos: int, n: int):
    """(header length including the mask key, payload length) of the frame at `buf[pos]`, or None
    while `buf[pos:n]` does not hold its whole header."""
    if n - pos < 2:
        return None
    b1 = buf[pos + 1]
    length = b1 & 0x7F
    if length == 126:
        if n - pos < 4:
            return None
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        head = 4
    elif length == 127:
        if n - pos < 10:
            return None
        length = int.from_bytes(buf[pos + 2:pos + 10], "big")
        head = 10
    else:
        head = 2
    if b1 & 0x80:
        head += 4
    return head, length


class FrameReader:
    """Incremental frame reader: `feed(data)` returns the whole frames it completes, as
    (opcode, fin, payload) with the payload unmasked; an incomplete frame waits for the next feed."""

    __slots__ = ("buf",)

    def __init__(self):
        self.buf = b""

    def feed(self, data: bytes) -> list:
        buf = self.buf + data if self.buf else data
        out = []
        pos = 0
        n = len(buf)
        while True:
            extent = frame_extent(buf, pos, n)
            if extent is None:
                break
            head, length = extent
            end = pos + head + length
            if end > n:
                break
            b0 = buf[pos]
            payload = buf[pos + head:end]
            if buf[pos + 1] & 0x80:
                payload = apply_mask(payload, buf[pos + head - 4:pos + head])
            out.append((b0 & 0x0F, b0 & 0x80, payload))
            pos = end
        self.buf = buf[pos:]
        return out
