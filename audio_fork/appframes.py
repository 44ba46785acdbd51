"""Masked client text frames for the app connection (RFC 6455 §5.2, §5.3), and the pool their mask
keys come from.

The stream writes its `media`/control texts to the app socket itself (app_sender.py); the app
connection's protocol object (app_connection.py) keeps the reads, pongs and Close. Per frame this does only what a 20 ms media
message needs: a 2-10 byte header packed with `struct`, a fresh 4-byte mask key, and the XOR done
by `websockets`' C speedup (`websockets.utils.apply_mask` where the speedup is not built).

Why not a library's frame builder (CPU per ~530-byte media message, measured 2026-11-21 on the
benchmark machine, median of 5 x 50 000): `websockets.frames.Frame(...).serialize(mask=True)`
4.2 us (a BytesIO, a `check()`, and `secrets.token_bytes(4)`, one `getrandom` syscall per frame,
with no way to pass it a key short of patching it); this 1.5 us.

Mask keys: RFC 6455 asks for keys "derived from a strong source of entropy" and unpredictable per
frame. `MaskKeys` draws `size` bytes from `os.urandom` at a time and hands out consecutive 4-byte
slices, each used once: the same source as `secrets.token_bytes`, one syscall per 1024 frames
instead of one per frame. Not thread-safe on its own; callfork runs on gevent (no switch can happen
inside `take`).
"""
from __future__ import annotations

import os
import struct

from .wsframes import apply_mask


__all__ = ["MaskKeys", "text_frame", "text_frames"]

_HEAD7 = struct.Struct("!BB").pack      # FIN+TEXT, MASK|len (len < 126)
_HEAD16 = struct.Struct("!BBH").pack    # ..., MASK|126, 16-bit len
_HEAD64 = struct.Struct("!BBQ").pack    # ..., MASK|127, 64-bit len
_FIN_TEXT = 0x81
_MASKED = 0x80


class MaskKeys:
    """4-byte mask keys cut from `size`-byte blocks of `os.urandom`; a fresh block when one is used up."""

    __slots__ = ("size", "_block", "_pos", "refills")

    def __init__(self, size: int = 4096):
        if size < 4 or size % 4:
            raise ValueError("size must be a positive multiple of 4")
        self.size = size
        self._block = b""
        self._pos = 0
        self.refills = 0

    def take(self) -> bytes:
        pos = self._pos
        if pos >= len(self._block):
            self._block = os.urandom(self.size)
            self.refills += 1
            pos = 0
        self._pos = pos + 4
        return self._block[pos:pos + 4]


_keys = MaskKeys()


def text_frame(text: str, keys: MaskKeys = _keys) -> bytes:
    """One final, masked text frame carrying `text` (UTF-8)."""
    data = text.encode("utf-8")
    n = len(data)
    if n < 126:
        head = _HEAD7(_FIN_TEXT, _MASKED | n)
    elif n < 65536:
        head = _HEAD16(_FIN_TEXT, _MASKED | 126, n)
    else:
        head = _HEAD64(_FIN_TEXT, _MASKED | 127, n)
    key = keys.take()
    return head + key + apply_mask(data, key)


def text_frames(texts, keys: MaskKeys = _keys) -> bytes:
    """Several texts as consecutive frames, in one bytes object (one write)."""
    return b"".join([text_frame(t, keys) for t in texts])
