"""<Gather> (input collection), its Plivo aliases <GetInput> (same attributes) and <GetDigits>.

All three expose the same Python attributes, so one executor serves them: GetDigits' own attributes
are mapped onto Gather's names (timeout → execution_timeout, digitTimeout → digit_end_timeout) and
Gather/GetInput carry GetDigits' extras (retries, valid_digits, ...) with neutral values.
"""
import re
import time

from esl_app import ESLTimeout

from ..base import Attr, AttrError, Custom, Enum, Int, Text
from ..flow import NextDocument
from .element import BOOL, HTTP_URL, METHOD, VobizVerb

DIGITS = "1234567890*#"


def _input_type(raw, warnings):
    words = [w for w in re.split(r"[\s,]+", str(raw).strip().lower()) if w] if isinstance(raw, str) else []
    if not words or any(w not in ("dtmf", "speech") for w in words):
        raise AttrError(f'"{raw}" is not allowed; allowed: dtmf, speech, "dtmf speech"')
    return " ".join(w for w in ("dtmf", "speech") if w in words)


def _finish_on_key(raw, warnings):
    value = str(raw).strip()
    if value.lower() == "none" or value == "":
        return ""
    if len(value) == 1 and value in DIGITS:
        return value
    raise AttrError(f'"{value}" is not allowed; allowed: one of 0-9, *, #, "" or none')


def _hints(raw, warnings):
    text = str(raw)
    if len(text) > 10000:
        raise AttrError(f"is {len(text)} characters; the limit is 10000")
    phrases = [p.strip() for p in text.split(",") if p.strip()]
    if len(phrases) > 500:
        raise AttrError(f"has {len(phrases)} phrases; the limit is 500")
    long = [p for p in phrases if len(p) > 100]
    if long:
        raise AttrError(f'phrase "{long[0][:30]}..." is {len(long[0])} characters; the limit is 100')
    return phrases


def _valid_digits(raw, warnings):
    value = str(raw).strip()
    if not value or any(c not in DIGITS for c in value):
        raise AttrError(f'"{value}" is not allowed; use characters from {DIGITS}')
    return value


INPUT_TYPE = Custom(_input_type, "dtmf|speech|dtmf speech")
FINISH_ON_KEY = Custom(_finish_on_key, "0-9, *, #, none")
LANGUAGE = Text(pattern=r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", pattern_desc="a BCP-47 tag such as en-US")

GATHER_ATTRIBUTES = (
    Attr("action", "action", HTTP_URL, None, required=True),
    Attr("method", "method", METHOD, "POST"),
    Attr("inputType", "input_type", INPUT_TYPE, "dtmf"),
    Attr("executionTimeout", "execution_timeout", Int(5, 60), 15),
    Attr("digitEndTimeout", "digit_end_timeout", Int(2, 10, words=("auto",)), "auto"),
    Attr("speechEndTimeout", "speech_end_timeout", Int(2, 10, words=("auto",)), "auto"),
    Attr("finishOnKey", "finish_on_key", FINISH_ON_KEY, "#"),
    Attr("numDigits", "num_digits", Int(1, 32), 32),
    Attr("speechModel", "speech_model",
         Enum("default", "command_and_search", "phone_call", "telephony"), "default"),
    Attr("hints", "hints", Custom(_hints, "comma-separated phrases"), ()),
    Attr("language", "language", LANGUAGE, "en-US"),
    Attr("interimSpeechResultsCallback", "interim_speech_results_callback", HTTP_URL, None),
    Attr("interimSpeechResultsCallbackMethod", "interim_speech_results_callback_method", METHOD, "POST"),
    Attr("log", "log", BOOL, True),
    Attr("redirect", "redirect", BOOL, True),
    Attr("profanityFilter", "profanity_filter", BOOL, False),
)


class Gather(VobizVerb):
    """Collect DTMF (and speech, which the executor reports as not supported) after the prompts."""
    name = "Gather"
    CHILDREN = ("Speak", "Play")
    ATTRIBUTES = GATHER_ATTRIBUTES
    # GetDigits' extras, neutral for Gather
    FIXED = {"retries": 1, "valid_digits": DIGITS, "invalid_digits_sound": None, "play_beep": False}

    @property
    def wants_dtmf(self) -> bool:
        return "dtmf" in self.input_type.split()

    @property
    def wants_speech(self) -> bool:
        return "speech" in self.input_type.split()

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """Play the prompts (a digit barges in), then collect DTMF from the caller's DTMF events.

        executionTimeout starts after the prompts; digitEndTimeout between digits ("auto" = 5 s);
        finishOnKey ends input and is not part of Digits; numDigits ends it too. GetDigits retries
        its prompts on no input or invalid digits (playing invalidDigitsSound). Speech input is not
        supported: said in the log and call record, then DTMF only. The action gets InputType,
        Digits and Speech; with redirect=true and input it replaces the document; on timeout Vobiz
        posts empty Digits and continues with the next element — so does callfork.
        """
        call.ensure_answered()
        if self.wants_speech:
            call.error(f"<{self.name}> line {self.line}: speech input is not supported by callfork; "
                       "collecting DTMF only")
        digits, timed_out = "", True
        with call.session.subscribe("DTMF") as dtmf:
            for attempt in range(max(1, self.retries)):
                digits, timed_out, invalid = self._collect_once(call, dtmf)
                if digits and not invalid:
                    break
                if invalid and self.invalid_digits_sound:
                    self._play_invalid(call)
                digits = "" if invalid else digits
        params = call.params(InputType="dtmf", Digits=digits, Speech="")
        call.timeline("gather", {"digits": digits, "timed_out": timed_out})
        if not self.action:
            return
        if digits and self.redirect:
            raise NextDocument(self.action, self.method, params, "action")
        call.post(self.action, self.method, params, self.name)

    def _collect_once(self, call, dtmf):
        """One attempt: prompts, then digits. Returns (digits, timed_out, invalid)."""
        self._prompt(call, dtmf)
        if self.play_beep:
            call.session.execute("playback", "tone_stream://%(300,200,700)")
        return self._read_digits(call, dtmf)

    def _prompt(self, call, dtmf) -> None:
        """The nested prompts, which a digit interrupts (it stays in `dtmf`, the first of Digits)."""
        call.session.set_var("playback_terminators", "any")
        call.barge_in = lambda: len(dtmf) > 0
        try:
            for prompt in self.children:
                if call.barged_in():
                    break
                call.run_nested(prompt)
        finally:
            call.barge_in = None
            call.session.set_var("playback_terminators", "none")

    def _read_digits(self, call, dtmf):
        """Digits from `dtmf` until a timeout, finishOnKey or numDigits: (digits, timed_out, invalid)."""
        digit_timeout = 5 if self.digit_end_timeout == "auto" else self.digit_end_timeout
        timeout = self.execution_timeout
        digits, invalid = "", False
        deadline = time.monotonic() + timeout
        while True:
            if call.interrupted.is_set():
                return digits, not digits, invalid
            try:
                event = dtmf.get(timeout=min(0.25, max(0.0, deadline - time.monotonic())))
            except ESLTimeout:
                if time.monotonic() < deadline:
                    continue
                return digits, not digits, invalid
            digit = event.get("DTMF-Digit", "")
            if self.finish_on_key and digit == self.finish_on_key:
                return digits, False, invalid
            if digit not in self.valid_digits:
                invalid = True
            digits += digit
            if len(digits) >= self.num_digits:
                return digits, False, invalid
            deadline = time.monotonic() + digit_timeout

    def _play_invalid(self, call):
        try:
            path = call.services.media_file(self.invalid_digits_sound)
        except Exception as exc:
            call.error(f"<{self.name}> invalidDigitsSound skipped: {exc}")
            return
        call.session.execute("playback", str(path))


class GetInput(Gather):
    """Plivo's name for Gather (the PyPI vobiz SDK still emits it); same attributes, Wait allowed."""
    name = "GetInput"
    CHILDREN = ("Speak", "Play", "Wait")


class GetDigits(Gather):
    """Plivo's DTMF-only input element, mapped onto Gather's Python attributes."""
    name = "GetDigits"
    CHILDREN = ("Speak", "Play", "Wait")
    ATTRIBUTES = (
        Attr("action", "action", HTTP_URL, None),
        Attr("method", "method", METHOD, "POST"),
        Attr("timeout", "execution_timeout", Int(minimum=1), 5),
        Attr("digitTimeout", "digit_end_timeout", Int(minimum=1), 2),
        Attr("finishOnKey", "finish_on_key", FINISH_ON_KEY, "#"),
        Attr("numDigits", "num_digits", Int(1, 99), 99),
        Attr("retries", "retries", Int(minimum=1), 1),
        Attr("redirect", "redirect", BOOL, True),
        Attr("playBeep", "play_beep", BOOL, False),
        Attr("validDigits", "valid_digits", Custom(_valid_digits, DIGITS), DIGITS),
        Attr("invalidDigitsSound", "invalid_digits_sound", HTTP_URL, None),
        Attr("log", "log", BOOL, True),
    )
    FIXED = {"input_type": "dtmf", "speech_end_timeout": "auto", "speech_model": "default", "hints": (),
             "language": "en-US", "interim_speech_results_callback": None,
             "interim_speech_results_callback_method": "POST", "profanity_filter": False}
