"""The playout queue of one bidirectional stream: app audio (already L16 8 kHz LE mono) arrives in
any size and faster than real time; the pacer pulls one 20 ms frame at a time. Marks/checkpoints
sit between the audio and fire (callback with their name) once all audio queued before them has
been pulled, or at once when nothing is queued (Twilio's rule). `clear()` drops queued audio and
returns the pending marks unfired (Vobiz voids them, Twilio echoes them: the caller decides).

Memory is bounded: at most `max_seconds` of audio is held; audio appended beyond that is dropped
(tail drop, so what is already queued still plays in order) and counted in `dropped_bytes`.
Owned by one stream; not shared between greenlets except through these methods (no awaits inside).

The queue holds audio as `bytes` and marks as their name (`str`), nothing else: neither is a
container the cyclic GC tracks, so a queue of seconds of audio for hundreds of streams adds
nothing to what each collection traverses (one tracked list per queued message did: thousands
of survivors that made the GC's young collections pass them on to every older one).
"""
from __future__ import annotations

from collections import deque
from typing import Callable

__all__ = ["PlayoutQueue"]

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
        self._items: deque = deque()  # audio (bytes) | a mark's name (str), in order
        self._head_off = 0  # bytes of the first item (audio) already pulled
        self._queued = 0  # audio bytes not yet pulled
        self._marks = 0
        self._carry = b""  # odd byte carried to the next append
        # counters
        self.dropped_bytes = 0
        self.overflows = 0

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
        items = self._items
        last = items[-1] if items else None
        if last is not None and last.__class__ is bytes and len(last) < self.frame_bytes:
            items[-1] = last + audio  # keep small appends together (cheap: < one frame)
        else:
            items.append(bytes(audio))
        self._queued += len(audio)
        return len(audio)

    def add_mark(self, name: str) -> bool:
        """Insert a mark after the audio queued so far. Returns True if it fired at once."""
        if not self._queued:
            self._fire(name)
            return True
        if self._marks >= self.max_marks:
            return False
        self._items.append(str(name))
        self._marks += 1
        return False

    def flush(self) -> None:
        """End of a burst: the trailing partial frame will be pulled padded with silence."""
        partial = self._queued % self.frame_bytes
        if partial:
            pad = self.frame_bytes - partial
            self._items.append(b"\x00" * pad)
            self._queued += pad

    def clear(self) -> list[str]:
        """Drop all queued audio; return the names of the pending marks (not fired)."""
        names = [item for item in self._items if item.__class__ is str]
        self._items.clear()
        self._head_off = 0
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
            data = items[0]
            if data.__class__ is str:
                break  # partial frame followed by a mark: pad it
            off = self._head_off
            take = min(need, len(data) - off)
            parts.append(data[off:off + take])
            need -= take
            if off + take == len(data):
                items.popleft()
                self._head_off = 0
            else:
                self._head_off = off + take
        got = n - need
        self._queued -= got
        if need:
            parts.append(b"\x00" * need)
        while items and items[0].__class__ is str:
            self._marks -= 1
            self._fire(items.popleft())
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
            if item.__class__ is str:
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
