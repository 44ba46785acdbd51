"""Re-framing of mod_audio_fork's binary messages into exact 20 ms frames.

mod_audio_fork usually sends one 20 ms frame per WebSocket message, but it sometimes coalesces two
(a 640-byte message in a `mono 8k` stream) and resampled frames can vary by a few samples
(fs-captures/audio-fork-ws-transcript.md §3). `FrameAssembler` takes messages of any size and
hands back whole frames, keeping the remainder for the next message.
"""
from __future__ import annotations

__all__ = ["FrameAssembler", "frame_bytes"]


def frame_bytes(sample_rate: int, channels: int = 1, ms: int = 20, sample_width: int = 2) -> int:
    """Bytes in one frame: rate/1000*ms samples x channels x sample width (8k mono L16 -> 320)."""
    return sample_rate * ms // 1000 * channels * sample_width


class FrameAssembler:
    """Feed arbitrary-size binary messages; get exact `bytes_per_frame` frames out."""

    __slots__ = ("bytes_per_frame", "_buf", "frames_out", "bytes_in")

    def __init__(self, bytes_per_frame: int):
        if bytes_per_frame <= 0:
            raise ValueError("bytes_per_frame must be positive")
        self.bytes_per_frame = bytes_per_frame
        self._buf = bytearray()
        self.frames_out = 0
        self.bytes_in = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add a message; return the complete frames now available (possibly none)."""
        n = self.bytes_per_frame
        self.bytes_in += len(data)
        if not self._buf and len(data) == n:  # the common case: one frame per message, no copy
            self.frames_out += 1
            return [bytes(data)]
        self._buf += data
        count = len(self._buf) // n
        if not count:
            return []
        frames = [bytes(self._buf[i * n:(i + 1) * n]) for i in range(count)]
        del self._buf[: count * n]
        self.frames_out += count
        return frames

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def flush(self, pad: bool = False) -> bytes | None:
        """Return the held partial frame (padded with silence to a full frame if `pad`), or None."""
        if not self._buf:
            return None
        data = bytes(self._buf)
        self._buf.clear()
        if pad:
            data += b"\x00" * (self.bytes_per_frame - len(data))
        return data
