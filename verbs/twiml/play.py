"""<Play>: an audio file by URL (relative to the document's URL, or absolute), played `loop` times
(0 = until the call ends), as Vobiz <Play> plays it; or, with `digits`, DTMF tones sent on the call
(0-9, *, #, and w for a 0.5 s pause: FreeSWITCH's send_dtmf reads w the same way)
(https://www.twilio.com/docs/voice/twiml/play)."""
from __future__ import annotations

import re

from ..base import Attr, AttrError, Custom, Int
from ..vobiz.play import Play as VobizPlay
from .element import TwimlVerb, resolve


def _digits(raw, warnings):
    value = str(raw).strip()
    if not re.fullmatch(r"[0-9*#w]+", value):
        raise AttrError(f'"{value}" is not allowed; use 0-9, *, # and w (a 0.5 s pause)')
    return value


class Play(TwimlVerb, VobizPlay):
    name = "Play"
    TEXT = "url"
    ATTRIBUTES = (
        Attr("loop", "loop", Int(minimum=0), 1),   # 0 = until the call ends
        Attr("digits", "digits", Custom(_digits, "0-9, *, #, w"), None),
    )

    def check(self):
        if not self.ok("digits"):
            return []
        if self.digits and self.text:
            return ["give either a URL (the text) or digits, not both"]
        if not self.digits and not self.text:
            return ["the URL (the element's text) is missing"]
        return []

    def summary_text(self) -> str:
        return self.text

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        if self.digits:
            call.ensure_answered()
            if not call.interrupted.is_set():
                call.session.execute("send_dtmf", self.digits)
            return
        self._url = resolve(call, self.text)
        super().run(call)
