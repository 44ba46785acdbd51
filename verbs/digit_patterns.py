"""Vobiz `digitsMatch`: the digits a party presses, matched against comma-separated patterns. The
one matcher of <Dial>'s digitsMatch/digitsMatchBLeg (verbs/dialing.py) and <Conference>'s
digitsMatch (verbs/conferencing.py).

`DigitMatcher.press(digit)` returns the pattern the digits pressed since the last match now end
with, or None. With `gap_s`, a pause that long starts a new sequence; only the last 32 digits count.
"""
from __future__ import annotations

import time

KEEP = 32


def split_patterns(text) -> tuple:
    """'*9, #12' -> ('*9', '#12'): the comma-separated patterns, blanks dropped."""
    if isinstance(text, (tuple, list)):
        return tuple(p for p in text if p)
    return tuple(p.strip() for p in str(text or "").split(",") if p.strip())


class DigitMatcher:
    def __init__(self, patterns, gap_s: float | None = None):
        self.patterns = split_patterns(patterns)
        self.gap_s = gap_s
        self.pressed = ""
        self._last = 0.0

    def press(self, digit: str, now: float | None = None):
        if not self.patterns or not digit:
            return None
        now = time.monotonic() if now is None else now
        if self.gap_s is not None and now - self._last >= self.gap_s:
            self.pressed = ""
        self._last = now
        self.pressed = (self.pressed + digit)[-KEEP:]
        for pattern in self.patterns:
            if self.pressed.endswith(pattern):
                self.pressed = ""
                return pattern
        return None
