"""<Wait>: pause (optionally until silence or a voicemail beep); first in the document, it delays answer."""
from ..base import Attr, Int
from .element import BOOL, VobizVerb

SILENCE_THRESHOLD = 200   # mean absolute sample per 20 ms frame below which the caller is silent


class Wait(VobizVerb):
    name = "Wait"
    ATTRIBUTES = (
        Attr("length", "length", Int(minimum=1), 1),              # seconds
        Attr("silence", "silence", BOOL, False),
        Attr("minSilence", "min_silence", Int(minimum=1), 2000),  # ms, only with silence=true
        Attr("beep", "beep", BOOL, False),
    )

    def check(self):
        errors = []
        if not self.ok("length", "silence", "min_silence", "beep"):
            return errors
        if "min_silence" in self.present and not self.silence:
            self.warnings.append("minSilence is ignored unless silence=\"true\"")
        if self.silence and self.length * 1000 <= self.min_silence:
            errors.append(f"minSilence ({self.min_silence} ms) must be shorter than length "
                          f"({self.length} s = {self.length * 1000} ms)")
        if self.beep and self.silence:
            self.warnings.append("beep is ignored when silence=\"true\"")
        return errors

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """First in the answer document it delays the answer (the call keeps ringing); otherwise
        it waits on an answered call. `silence` ends early after minSilence ms of silence
        (FreeSWITCH `wait_for_silence`); `beep` detection is not supported: said once in the log
        and the call record, and the full length is waited."""
        if not call.is_first_verb or call.early_media_only:
            call.ensure_answered()
        if call.interrupted.is_set():
            return
        if self.silence and call.answered:
            # wait_for_silence ends 25 frames (0.5 s) after `silence_hits` quiet frames, and only
            # once the caller was heard (listen_hits=0: one loud frame); a line silent from the
            # start waits the full length, as FreeSWITCH's detector never qualifies it
            frames = max(1, self.min_silence // 20 - 25)
            call.session.execute("wait_for_silence", f"{SILENCE_THRESHOLD} {frames} 0 {self.length * 1000}")
            return
        if self.beep:
            call.error(f"<Wait beep=\"true\"> line {self.line}: voicemail beep detection is not "
                       "supported by callfork yet; waiting the full length")
        call.sleep(self.length)
