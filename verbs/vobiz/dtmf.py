"""<DTMF>: send digits (1234567890*#, w = 0.5 s pause, W = 1 s) to the call.

Any other character makes Vobiz ignore the element: the verb is kept with `ignored=True` and a
warning instead of failing the document (vobiz.md §2.8).
"""
import re

from ..base import Attr
from .element import BOOL, VobizVerb

DTMF_CHARACTERS = "1234567890*#wW"


class DTMF(VobizVerb):
    name = "DTMF"
    TEXT = "text"
    ATTRIBUTES = (
        Attr("async", "async_", BOOL, True),
    )
    FIXED = {"ignored": False}

    @property
    def digits(self) -> str:
        return self.text

    def check(self):
        if not self.text:
            self.ignored = True
            self.warnings.append("no digits: the element is ignored")
        elif not re.fullmatch(r"[0-9*#wW]+", self.text):
            bad = "".join(sorted({c for c in self.text if c not in DTMF_CHARACTERS}))
            self.ignored = True
            self.warnings.append(f"digits {self.text!r} contain {bad!r}, not in {DTMF_CHARACTERS}: "
                                 "the element is ignored (as Vobiz does)")
        return []

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """`send_dtmf <digits>` (w/W are FreeSWITCH's pauses too). async (default): go on at once."""
        if self.ignored:
            for warning in self.warnings:
                call.error(f"<DTMF> line {self.line} ignored: {warning}")
            return
        call.ensure_answered()
        if call.interrupted.is_set():
            return
        if self.async_:
            call.session.execute_async("send_dtmf", self.digits)
        else:
            call.session.execute("send_dtmf", self.digits)
