"""<Gather>: DTMF input after nested <Say>/<Play>/<Pause> prompts, which a digit interrupts
(https://www.twilio.com/docs/voice/twiml/gather). Runs on Vobiz <Gather>'s prompt and digit code.

- `timeout` (default 5 s) is both the wait for the first digit after the prompts and between digits;
  `finishOnKey` (default #, "" for none) ends input and is not part of Digits; `numDigits` ends it too.
- With digits, the call goes on with the TwiML that `action` (default: the current document's URL,
  requested again, as Twilio does) returns, requested with `method` and Digits plus the call's
  parameters. With none, the next verb runs, unless actionOnEmptyResult="true" (then the action is
  requested with an empty Digits).
- `bargeIn="false"`: digits pressed during the prompts are dropped and do not stop them.
- Speech is refused at parse time: `input` with `speech` is an error in the document ("speech
  recognition is not supported by callfork"), so `callfork validate` shows it and a call that gets
  such a document ends before anything is played, with that error. The speech-only attributes
  (speechTimeout, hints, language, ...) are accepted and ignored, with a warning.
"""
from __future__ import annotations

import re

from ..base import Attr, AttrError, Custom, Int, Text
from ..flow import NextDocument
from ..vobiz.element import BOOL
from ..vobiz.gather import DIGITS, FINISH_ON_KEY
from ..vobiz.gather import Gather as VobizGather
from .element import METHOD, REL_URL, TwimlVerb, resolve

UNLIMITED = 10 ** 9
SPEECH_ONLY = "it only applies to speech input, which callfork does not recognise"


def _input(raw, warnings):
    words = [w for w in re.split(r"[\s,]+", str(raw).strip().lower()) if w]
    if not words or any(w not in ("dtmf", "speech") for w in words):
        raise AttrError(f'"{raw}" is not allowed; allowed: dtmf, speech, "dtmf speech"')
    if "speech" in words:
        raise AttrError('speech recognition is not supported by callfork; use input="dtmf"')
    return "dtmf"


def _speech_only(xml: str, py: str) -> Attr:
    return Attr(xml, py, Text(), None, ignored=SPEECH_ONLY)


class Gather(TwimlVerb, VobizGather):
    name = "Gather"
    CHILDREN = ("Say", "Play", "Pause")
    ATTRIBUTES = (
        Attr("action", "action", REL_URL, None),
        Attr("method", "method", METHOD, "POST"),
        Attr("timeout", "execution_timeout", Int(minimum=1), 5),
        Attr("finishOnKey", "finish_on_key", FINISH_ON_KEY, "#"),
        Attr("numDigits", "num_digits", Int(minimum=1), UNLIMITED),
        Attr("input", "input_type", Custom(_input, "dtmf"), "dtmf"),
        Attr("actionOnEmptyResult", "action_on_empty_result", BOOL, False),
        Attr("bargeIn", "barge_in", BOOL, True),
        _speech_only("speechTimeout", "speech_timeout"),
        _speech_only("speechModel", "speech_model"),
        _speech_only("hints", "hints"),
        _speech_only("language", "language"),
        _speech_only("profanityFilter", "profanity_filter"),
        _speech_only("enhanced", "enhanced"),
        _speech_only("partialResultCallback", "partial_result_callback"),
        _speech_only("partialResultCallbackMethod", "partial_result_callback_method"),
        _speech_only("maxSpeechTime", "max_speech_time"),
        Attr("debug", "debug", Text(), None, ignored="callfork has no debug output for <Gather>"),
    )
    # what Vobiz <Gather>'s digit code reads that TwiML has no attribute for
    FIXED = {"retries": 1, "valid_digits": DIGITS, "invalid_digits_sound": None, "play_beep": False}

    @property
    def digit_end_timeout(self):
        return self.execution_timeout    # Twilio's timeout also runs between digits

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        call.ensure_answered()
        with call.session.subscribe("DTMF") as dtmf:
            digits, timed_out, _invalid = self._collect_once(call, dtmf)
        call.timeline("gather", {"digits": digits, "timed_out": timed_out})
        if call.interrupted.is_set() or (not digits and not self.action_on_empty_result):
            return
        url = resolve(call, self.action) or getattr(call, "document_url", None)
        raise NextDocument(url, self.method, call.params(Digits=digits), "action")

    def _prompt(self, call, dtmf) -> None:
        if self.barge_in:
            super()._prompt(call, dtmf)
            return
        for prompt in self.children:
            call.run_nested(prompt)
        while len(dtmf):     # bargeIn="false": what was pressed meanwhile does not count
            dtmf.get(timeout=0)
