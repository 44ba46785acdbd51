"""`LogLimiter`: at most `burst` log lines of one kind per `window_s` seconds (optionally per key),
for lines a peer can cause at will (a relay connection refused, an app message ignored). The lines
held back are counted, and the next line logged after them says how many there were. The counters
in /metrics still count every event.

    _REFUSED = LogLimiter(burst=10, window_s=60)
    _REFUSED.warning(log, "relay: 403 for %s: unknown stream %r", peer, stream_id)
    _IGNORED.warning(log, "%s ignored app message: %s", label, exc, key=label)   # per stream
"""
from __future__ import annotations

import logging
import time

__all__ = ["LogLimiter"]


class LogLimiter:
    def __init__(self, burst: int = 10, window_s: float = 60.0, max_keys: int = 1024, clock=time.monotonic):
        self.burst = burst
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._windows: dict = {}   # key -> [window start, lines logged in it, held back in it, held back before]

    def log(self, logger: logging.Logger, level: int, msg: str, *args, key=None) -> bool:
        """Log `msg % args` unless `burst` lines of this key were logged in the current window;
        True if it was logged."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.window_s:
            held = window[2] + window[3] if window is not None else 0
            self._windows.pop(key, None)
            if len(self._windows) >= self.max_keys:
                self._windows.pop(next(iter(self._windows)))   # the key whose window is oldest
            window = self._windows[key] = [now, 0, 0, held]
        if window[1] >= self.burst:
            window[2] += 1
            return False
        window[1] += 1
        if window[3]:
            msg += " (%d more like this were not logged)"
            args += (window[3],)
            window[3] = 0
        elif window[1] == self.burst:
            msg += " (further ones are held back for up to %g s)"
            args += (self.window_s,)
        logger.log(level, msg, *args)
        return True

    def warning(self, logger: logging.Logger, msg: str, *args, key=None) -> bool:
        return self.log(logger, logging.WARNING, msg, *args, key=key)
