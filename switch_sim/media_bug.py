"""The audio buffers of one FreeSWITCH media bug and `switch_core_media_bug_read` over them
(switch_core_media_bug.c), for the simulator's record_session and mod_audio_fork bugs, plus
`sln_silence` (switch_generate_sln_silence) for the frames apps write while idle.

What this models, from the v1.10.12 source:
* a bug with SMBF_READ_STREAM gets every frame the channel reads (a CNG frame, when the caller
  sent nothing, as 0xFFFF samples); one with SMBF_WRITE_STREAM every frame the channel writes, at
  the moment its turn comes in the bug list (so before a later bug's SMBF_WRITE_REPLACE changes
  it). Each buffer holds at most MAX_BUG_BUFFER bytes; what does not fit is dropped;
* `read(fill)`: one 20 ms frame from each buffer the bug has. A side that holds less than a frame
  makes it return nothing; an empty side is filled with 0xFFFF only when `fill` is false and the
  other side has data (record_session's first read per read frame); mod_audio_fork always reads
  with `fill` true, so a stereo or mixed fork gets nothing while the channel writes nothing, and
  the frames it read meanwhile wait (the read side then lags by that much). When the write side
  holds more than the read side and more than two frames, one written frame is dropped per read.
* `compose`: stereo interleaves read (left) and write (right), or swapped; otherwise both are
  added, with FreeSWITCH's own overflow rule.
"""
from __future__ import annotations

import numpy as np

FRAME_BYTES = 320                 # read_impl.decoded_bytes_per_packet: 20 ms of L16 at 8 kHz
MAX_BUG_BUFFER = 1024 * 512
CNG_FILL = b'\xff' * FRAME_BYTES


class BugBuffers:
    def __init__(self, read: bool, write: bool, frame_bytes: int = FRAME_BYTES):
        self.read_buf = bytearray() if read else None
        self.write_buf = bytearray() if write else None
        self.frame = frame_bytes

    def push_read(self, data: bytes) -> None:
        self._push(self.read_buf, data)

    def push_write(self, data: bytes) -> None:
        self._push(self.write_buf, data)

    def _push(self, buf, data: bytes) -> None:
        if buf is None:
            return
        if len(buf) + len(data) > MAX_BUG_BUFFER:
            return
        buf += data

    def read(self, fill: bool):
        """(read bytes | None, write bytes | None) for one frame, or None (SWITCH_STATUS_FALSE)."""
        frame = self.frame
        rbuf, wbuf = self.read_buf, self.write_buf
        do_read = len(rbuf) if rbuf is not None else 0
        do_write = len(wbuf) if wbuf is not None else 0
        if do_write > do_read and do_write > frame * 2:
            del wbuf[:frame]
            do_write = len(wbuf)
        fill_read = rbuf is not None and not do_read
        fill_write = wbuf is not None and not do_write
        if (do_read and do_read < frame) or (do_write and do_write < frame):
            return None
        if (fill_read and fill_write) or (fill and (fill_read or fill_write)):
            return None
        read = write = None
        if do_read:
            read = bytes(rbuf[:frame])
            del rbuf[:frame]
        elif fill_read:
            read = CNG_FILL[:frame]
        if do_write:
            write = bytes(wbuf[:frame])
            del wbuf[:frame]
        elif fill_write:
            write = CNG_FILL[:frame]
        return read, write


def compose(read: bytes | None, write: bytes | None, stereo: bool, swap: bool = False) -> bytes:
    """The frame switch_core_media_bug_read hands the bug's owner."""
    samples = FRAME_BYTES // 2
    r = np.frombuffer(read, dtype='<i2').astype(np.int32) if read else np.zeros(samples, dtype=np.int32)
    w = np.frombuffer(write, dtype='<i2').astype(np.int32) if write else np.zeros(samples, dtype=np.int32)
    if stereo:
        left, right = (w, r) if swap else (r, w)
        out = np.empty(len(left) * 2, dtype=np.int32)
        out[0::2] = left
        out[1::2] = right
        return out.astype('<i2').tobytes()
    z = r + w
    over = (z > 32767) | (z < -32768)
    z = np.where(over, z + r // 2 + w // 2, z)
    return np.clip(z, -32768, 32767).astype('<i2').tobytes()


_NOISE: dict[int, np.ndarray] = {}


def sln_silence(samples: int, divisor: int, offset: int = 0) -> np.ndarray:
    """switch_generate_sln_silence: zeros for divisor -1, else low noise of at most 32768/divisor.
    Approximated: the noise is a fixed pseudo-random second (not FreeSWITCH's LCG), cycled."""
    if divisor == -1 or divisor > 32768:
        return np.zeros(samples, dtype=np.int16)
    table = _NOISE.get(divisor)
    if table is None:
        rng = np.random.default_rng(divisor)
        table = (rng.integers(-32768, 32768, 8000) // max(1, divisor)).astype(np.int16)
        _NOISE[divisor] = table
    start = offset % len(table)
    return np.resize(np.roll(table, -start), samples).astype(np.int16)
