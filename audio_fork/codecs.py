"""Audio sample conversions for the relay: L16 byte order, G.711 µ-law, streaming resampling,
stereo split and mixing.

Everything works on `bytes` of signed 16-bit PCM (L16) or µ-law octets and uses numpy lookup
tables built once at import. No state except inside `Resampler` (one per stream direction).
"""
from __future__ import annotations

import numpy as np
import soxr

__all__ = [
    "byteswap16", "le_to_be", "be_to_le", "ulaw_decode", "ulaw_encode", "Resampler",
    "stereo_split", "mix", "SUPPORTED_RATES",
]

SUPPORTED_RATES = (8000, 16000, 24000)

_INT16 = np.dtype("<i2")

# --- L16 byte order ------------------------------------------------------------------------------


def byteswap16(data: bytes) -> bytes:
    """Swap the two bytes of every 16-bit sample (LE <-> BE). An odd trailing byte is dropped."""
    n = len(data) & ~1
    return np.frombuffer(data, dtype=np.uint16, count=n // 2).byteswap().tobytes()


le_to_be = byteswap16
be_to_le = byteswap16

# --- G.711 µ-law ---------------------------------------------------------------------------------

_BIAS = 0x84
_CLIP = 32635


def _build_decode_table() -> np.ndarray:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> np.ndarray:
    """µ-law byte for every int16 value, indexed by the value as uint16 (65536 entries)."""
    pcm = np.arange(65536, dtype=np.int32)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm)
    sign = np.where(pcm < 0, 0x80, 0)
    # negative values use |x| - 1, as ITU-T G.191's reference encoder and FreeSWITCH's g711.h do
    # (so -1 encodes like 0 and the code for -x matches the code for x - 1)
    mag = np.minimum(np.where(pcm < 0, -pcm - 1, pcm), _CLIP) + _BIAS
    # exponent = position of the highest set bit among bits 7..14, minus 7
    exponent = np.zeros_like(mag)
    for e in range(7, 0, -1):
        exponent = np.where((exponent == 0) & ((mag >> (e + 7)) & 1).astype(bool), e, exponent)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


_ULAW_DECODE = _build_decode_table()
_ULAW_ENCODE = _build_encode_table()


def ulaw_decode(data: bytes) -> bytes:
    """µ-law octets -> L16 little-endian."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype(_INT16, copy=False).tobytes()


def ulaw_encode(data: bytes) -> bytes:
    """L16 little-endian -> µ-law octets (one per sample; an odd trailing byte is dropped)."""
    n = len(data) & ~1
    return _ULAW_ENCODE[np.frombuffer(data, dtype="<u2", count=n // 2)].tobytes()

# --- resampling ----------------------------------------------------------------------------------


class Resampler:
    """Streaming int16 mono resampler (soxr). `process(l16le)` may return fewer or more samples
    than the exact ratio for one call (filter delay); over a stream the totals match.
    Same rate in and out is a pass-through. Quality "MQ" holds back ~15-26 ms (HQ: 21-66 ms),
    which matters on a live call; telephony audio does not need more. After `flush()` the
    stream is finished: make a new Resampler for more audio."""

    def __init__(self, src_rate: int, dst_rate: int, quality: str = "MQ"):
        if src_rate not in SUPPORTED_RATES or dst_rate not in SUPPORTED_RATES:
            raise ValueError(f"unsupported resampling {src_rate} -> {dst_rate} (supported: {SUPPORTED_RATES})")
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._stream = None if src_rate == dst_rate else soxr.ResampleStream(
            src_rate, dst_rate, 1, dtype="int16", quality=quality)
        self._carry = b""

    def process(self, data: bytes, last: bool = False) -> bytes:
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) & 1:
            self._carry = data[-1:]
            data = data[:-1]
        if self._stream is None:
            return data
        x = np.frombuffer(data, dtype=_INT16)
        return self._stream.resample_chunk(x, last=last).astype(_INT16, copy=False).tobytes()

    def flush(self) -> bytes:
        return self.process(b"", last=True)

# --- channels ------------------------------------------------------------------------------------


def stereo_split(data: bytes) -> tuple[bytes, bytes]:
    """Interleaved stereo L16 -> (left, right) mono L16. A trailing partial sample pair is dropped."""
    n = len(data) // 4
    s = np.frombuffer(data, dtype=_INT16, count=n * 2)
    return s[0::2].tobytes(), s[1::2].tobytes()


def stereo_right(data: bytes) -> bytes:
    """Right channel of interleaved stereo L16."""
    n = len(data) // 4
    return np.frombuffer(data, dtype=_INT16, count=n * 2)[1::2].tobytes()


def mix(*streams: bytes) -> bytes:
    """Sum L16 mono streams sample by sample, clipped to int16. The result is as long as the longest."""
    if not streams:
        return b""
    length = max(len(s) for s in streams) // 2
    acc = np.zeros(length, dtype=np.int32)
    for s in streams:
        a = np.frombuffer(s, dtype=_INT16, count=len(s) // 2)
        acc[: len(a)] += a
    return np.clip(acc, -32768, 32767).astype(_INT16).tobytes()
