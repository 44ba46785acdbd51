"""Repeated stream status callbacks, coalesced: `StatusCoalescer`, one per stream.

An app can make a stream report the same thing thousands of times a second (a `playAudio` flood
fills the playout queue on every message; `clearAudio` in a tight loop), and each report was one
durable webhook: a SQLite commit, an HTTP request, and a place in the call's ordered outbox ahead
of its Hangup webhook. So a repeated status event (one kind of DegradedStream, ClearedAudio) is
posted at once the first time, and then at most once per `interval` seconds while it keeps
happening: a window opens with the first post; what happens inside it is counted, and when the
window ends one webhook reports it (`Occurrences` = how many times it happened since the previous
one, the fields of the latest occurrence) and the next window opens; a window in which nothing
happened ends the episode, and the next occurrence is posted at once again. When the stream ends
(or reconnects with a new stream id) what is still counted is posted before anything else the end
posts (StopStream). Every webhook of such an event carries `Occurrences` (1 on the first), so the
sum over them is how often it happened (docs/decisions.md, Streams).

The coalescer keeps no reference to the stream: the caller passes its `post(event, fields)` with
each report (a window's timer holds it only until the window ends or `flush()` kills it).
"""
from __future__ import annotations

import gevent

__all__ = ["StatusCoalescer"]


class _Window:
    __slots__ = ("event", "count", "fields", "timer")

    def __init__(self, event: str):
        self.event = event
        self.count = 0          # occurrences since the last post
        self.fields: dict = {}  # of the latest of them
        self.timer = None


class StatusCoalescer:
    def __init__(self):
        self._windows: dict = {}   # key -> _Window
        self._closed = False

    def report(self, post, event: str, key: str, interval: float, fields: dict) -> None:
        """One occurrence of `event` (its kind: `key`): posted now, or counted into the window."""
        if self._closed:
            return
        window = self._windows.get(key)
        if window is not None:
            window.count += 1
            window.fields = fields
            return
        window = self._windows[key] = _Window(event)
        window.timer = gevent.spawn_later(interval, self._tick, post, key, interval)
        post(event, dict(fields, Occurrences="1"))

    def _tick(self, post, key: str, interval: float) -> None:
        window = self._windows.get(key)
        if window is None or self._closed:
            return
        if not window.count:
            del self._windows[key]          # a quiet window: the episode is over
            return
        count, fields = window.count, window.fields
        window.count, window.fields = 0, {}
        window.timer = gevent.spawn_later(interval, self._tick, post, key, interval)
        post(window.event, dict(fields, Occurrences=str(count)))

    def flush(self, post, close: bool = False) -> None:
        """Post what is counted and forget the windows (the stream ended, or got a new id);
        `close`: nothing is reported after this."""
        windows = list(self._windows.values())
        self._windows.clear()
        self._closed = self._closed or close
        for window in windows:
            if window.timer is not None:
                window.timer.kill(block=False)
                window.timer = None
            if window.count:
                post(window.event, dict(window.fields, Occurrences=str(window.count)))
