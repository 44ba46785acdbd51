"""SWML sleep: pause for a duration in milliseconds ({"sleep": 5000} or {"sleep": {"duration": 5000}}); -1 = forever."""
import math

from ..base import Attr, AttrError, Custom
from .method import SwmlMethod


def _duration(raw, warnings):
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise AttrError("must be a number of milliseconds")
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        raise AttrError(f'"{raw}" is not a number of milliseconds') from None
    if not math.isfinite(value):
        raise AttrError(f'"{raw}" is not a number of milliseconds')
    if value != -1 and value < 0:
        raise AttrError(f"{raw} is negative; use milliseconds >= 0, or -1 for forever")
    return int(value)


class Sleep(SwmlMethod):
    name = "sleep"
    SCALAR = "duration"
    ATTRIBUTES = (
        Attr("duration", "duration", Custom(_duration, "milliseconds"), None, required=True),
    )

    @property
    def forever(self) -> bool:
        return self.duration == -1

    def run(self, call) -> None:
        """Wait `duration` ms (-1: until the call ends). DTMF does not end it."""
        if self.forever:
            while call.sleep(3600):
                pass
            return
        call.sleep(self.duration / 1000.0)
