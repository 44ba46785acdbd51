"""`AppSendQueue`: the bounded queue of text frames from one stream to its app (owned by the stream;
drained by its writer greenlet). Items are texts, or bytes already framed (`put_raw`)."""
from __future__ import annotations

from collections import deque

from gevent.event import Event

__all__ = ["AppSendQueue"]


class AppSendQueue:
    """Bounded FIFO of text frames for the app. Media beyond `limit` is dropped (and counted);
    control messages (start, acks, dtmf, stop) always go in, up to a hard cap of 4x."""

    def __init__(self, limit: int):
        self.limit = limit
        self._q: deque = deque()
        self.items = self._q  # read-only view for the hot path: `not outbox.items` is "empty" without a call
        self._ready = Event()
        self.closed = False
        self.dropped = 0

    def put(self, text: str, control: bool = False) -> bool:
        if self.closed:
            return False
        n = len(self._q)
        if n >= (self.limit * 4 if control else self.limit):
            self.dropped += 1
            return False
        self._q.append(text)
        self._ready.set()
        return True

    def put_raw(self, data: bytes) -> None:
        """Already-framed bytes that must reach the app (the rest of a frame the stream started
        writing itself): never dropped, never counted against the limit."""
        self._q.append(data)
        self._ready.set()

    def get(self, timeout: float):
        """Next text, None on timeout; raises EOFError once closed and empty."""
        if not self._q:
            if self.closed:
                raise EOFError
            self._ready.clear()
            self._ready.wait(timeout)
            if not self._q:
                if self.closed:
                    raise EOFError
                return None
        return self._q.popleft()

    def drain(self, limit: int) -> list:
        """Up to `limit` more queued texts, without waiting (the writer sends them in one go)."""
        q = self._q
        out = []
        while q and len(out) < limit:
            out.append(q.popleft())
        return out

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._q)
