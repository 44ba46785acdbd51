"""The playout queue of one bidirectional stream: app audio (already L16 8 kHz LE mono) arrives in
any size and faster than real time; the pacer pulls one 20 ms frame at a time. Marks/checkpoints
sit between the audio and fire (callback with their name) once all audio queued before them has
been pulled, or at once when nothing is queued (Twilio's rule). `clear()` drops queued audio and
returns the pending marks unfired (Vobiz voids them, Twilio echoes them: the caller decides).

Memory is bounded: at most `max_seconds` of audio is held; audio appended beyond that is dropped
(tail drop, so what is already queued still plays in order) and counted in `dropped_bytes`.
Owned by one stream; not shared between greenlets except through these methods (no awaits inside).
"""
from __future__ import annotations

from collections import deque
from typing import Callable

__all__ = ["PlayoutQueue"]

_AUDIO = 0
_MARK = 1


class PlayoutQueue:
    def __init__(self, frame_bytes: int = 320, on_mark: Callable[[str], None] | None = None,
                 max_seconds: float = 60.0, frame_ms: int = 20, max_marks: int = 1000):
        if frame_bytes <= 0 or frame_bytes % 2:
            raise ValueError("frame_bytes must be a positive even number")
        self.frame_bytes = frame_bytes
        self.frame_ms = frame_ms
        self.on_mark = on_mark
        self.max_bytes = int(max_seconds * 1000 / frame_ms) * frame_bytes
        self.max_marks = max_marks
        self._items: deque = deque()  # [_AUDIO, bytes, offset] | [_MARK, name]
        self._queued = 0  # audio bytes not yet pulled
        self._marks = 0
        self._carry = b""  # odd byte carried to the next append
        # counters
        self.dropped_bytes = 0
        self.dropped_marks = 0
        self.overflows = 0
        self.frames_pulled = 0

    # -- input ------------------------------------------------------------------------------------

    def append(self, audio: bytes) -> int:
        """Queue audio; returns the number of bytes accepted (the rest was dropped: queue full)."""
        if self._carry:
            audio = self._carry + audio
            self._carry = b""
        if len(audio) & 1:
            self._carry = audio[-1:]
            audio = audio[:-1]
        if not audio:
            return 0
        room = self.max_bytes - self._queued
        if len(audio) > room:
            keep = max(0, room) & ~1
            self.dropped_bytes += len(audio) - keep
            self.overflows += 1
            audio = audio[:keep]
            if not audio:
                return 0
        last = self._items[-1] if self._items else None
        if last is not None and last[0] == _AUDIO and last[2] == 0 and len(last[1]) < self.frame_bytes:
            last[1] = last[1] + audio  # keep small appends together (cheap: < one frame)
        else:
            self._items.append([_AUDIO, bytes(audio), 0])
        self._queued += len(audio)
        return len(audio)

    def add_mark(self, name: str) -> bool:
        """Insert a mark after the audio queued so far. Returns True if it fired at once."""
        if not self._queued:
            self._fire(name)
            return True
        if self._marks >= self.max_marks:
            self.dropped_marks += 1
            return False
        self._items.append([_MARK, name])
        self._marks += 1
        return False

    def flush(self) -> None:
        """End of a burst: the trailing partial frame will be pulled padded with silence."""
        partial = self._queued % self.frame_bytes
        if partial:
            pad = self.frame_bytes - partial
            self._items.append([_AUDIO, b"\x00" * pad, 0])
            self._queued += pad

    def clear(self) -> list[str]:
        """Drop all queued audio; return the names of the pending marks (not fired)."""
        names = [item[1] for item in self._items if item[0] == _MARK]
        self._items.clear()
        self._queued = 0
        self._marks = 0
        self._carry = b""
        return names

    # -- output -----------------------------------------------------------------------------------

    def pull(self, partial: bool = False) -> bytes | None:
        """The next 20 ms frame, or None if less than a frame is queued (and no mark forces it).
        `partial`: a last partial frame is padded with silence instead of waiting for more audio."""
        n = self.frame_bytes
        if self._queued < n and not self._mark_after_audio() and not (partial and self._queued):
            return None
        parts = []
        need = n
        items = self._items
        while need and items:
            item = items[0]
            if item[0] == _MARK:
                break  # partial frame followed by a mark: pad it
            data, off = item[1], item[2]
            take = min(need, len(data) - off)
            parts.append(data[off:off + take])
            need -= take
            if off + take == len(data):
                items.popleft()
            else:
                item[2] = off + take
        got = n - need
        self._queued -= got
        if need:
            parts.append(b"\x00" * need)
        self.frames_pulled += 1
        while items and items[0][0] == _MARK:
            self._marks -= 1
            self._fire(items.popleft()[1])
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def has_frame(self) -> bool:
        """True if `pull()` would return a frame now."""
        return self._queued >= self.frame_bytes or self._mark_after_audio()

    def has_mark_after_audio(self) -> bool:
        """True if a mark waits behind queued audio."""
        return self._mark_after_audio()

    def _mark_after_audio(self) -> bool:
        """True if some audio (< one frame) is queued and a mark follows it."""
        if not self._queued:
            return False
        for item in self._items:
            if item[0] == _MARK:
                return True
        return False

    def _fire(self, name: str) -> None:
        if self.on_mark is not None:
            self.on_mark(name)

    # -- state ------------------------------------------------------------------------------------

    @property
    def queued_bytes(self) -> int:
        return self._queued

    @property
    def queued_ms(self) -> float:
        return self._queued / self.frame_bytes * self.frame_ms

    @property
    def pending_marks(self) -> int:
        return self._marks

    def __len__(self) -> int:
        return self._queued
