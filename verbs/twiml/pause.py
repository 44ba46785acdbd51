"""<Pause length>: wait `length` seconds (default 1); first in the answer document it delays the answer,
as Twilio's does (https://www.twilio.com/docs/voice/twiml/pause). Run as Vobiz <Wait> runs it."""
from __future__ import annotations

from ..base import Attr, Int
from ..vobiz.wait import Wait


class Pause(Wait):
    name = "Pause"
    ATTRIBUTES = (
        Attr("length", "length", Int(minimum=0), 1),   # seconds
    )
    FIXED = {"silence": False, "min_silence": 2000, "beep": False}   # <Wait>'s options, off
