"""<Record>: voicemail-style recording, a whole-call session recording, or (in <Dial>) from B-leg answer.

The older docs nest a <Stream> inside <Record>: kept as the single child (docs/decisions.md).
"""
from esl_app import CallGone, ESLTimeout

from ..base import Attr, AttrError, Custom, Enum, Int, Text
from ..flow import NextDocument
from ..recording import (END_HUNG_UP, END_KEY, END_MAX_LENGTH, END_TIMEOUT, Recording, RecordAppLimit,
                         SessionRecording, wav_duration_ms)
from .element import BOOL, HTTP_URL, METHOD, VobizVerb


BEEP = "tone_stream://%(300,200,700)"   # Plivo's beep
SILENCE_THRESHOLD = 200                # energy below this counts as silence (FreeSWITCH record)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _keys(raw, warnings):
    value = str(raw).strip()
    if value.lower() == "none" or value == "":
        return ""
    if any(c not in "1234567890*#" for c in value):
        raise AttrError(f'"{value}" is not allowed; use keys from 1234567890*# (or none)')
    return value


class Record(VobizVerb):
    name = "Record"
    CHILDREN = ("Stream",)
    ATTRIBUTES = (
        Attr("action", "action", HTTP_URL, None),
        Attr("method", "method", METHOD, "POST"),
        Attr("fileFormat", "file_format", Enum("mp3", "wav", case_insensitive=True), "mp3"),
        Attr("redirect", "redirect", BOOL, False),           # Vobiz: false (Plivo: true)
        Attr("timeout", "timeout", Int(minimum=1), 60),      # trailing silence, s (Plivo: 15)
        Attr("maxLength", "max_length", Int(minimum=1), 60),
        Attr("playBeep", "play_beep", BOOL, True),
        Attr("finishOnKey", "finish_on_key", Custom(_keys, "keys from 1234567890*#"), "1234567890*#"),
        Attr("recordSession", "record_session", BOOL, False),
        Attr("startOnDialAnswer", "start_on_dial_answer", BOOL, False),
        Attr("transcriptionType", "transcription_type", Enum("auto", "hybrid"), "auto"),
        Attr("transcriptionUrl", "transcription_url", HTTP_URL, None),
        Attr("transcriptionMethod", "transcription_method", METHOD, "POST"),
        Attr("callbackUrl", "callback_url", HTTP_URL, None),
        Attr("callbackMethod", "callback_method", METHOD, "POST"),
        Attr("recordChannelType", "record_channel_type", Enum("mono", "stereo"), "stereo"),
        Attr("transcriptionReportType", "transcription_report_type", Text(), None),
    )
    FIXED = {"in_dial": False}

    @property
    def stream(self):
        """The nested <Stream> (older docs form), or None."""
        return self.children[0] if self.children else None

    @property
    def background(self) -> bool:
        """True when the recording does not block the document."""
        return self.record_session or self.start_on_dial_answer or bool(self.children) or self.in_dial

    def placed_in(self, parent_name: str) -> None:
        self.in_dial = parent_name == "Dial"

    def check(self):
        errors = []
        if len(self.children) > 1:
            errors.append(f"at most one <Stream> may be nested in <Record>; found {len(self.children)}")
        if self.in_dial and not self.start_on_dial_answer and self.ok("start_on_dial_answer"):
            self.warnings.append('a <Record> inside <Dial> starts when the B-leg answers; '
                                 'startOnDialAnswer="true" is implied')
            self.start_on_dial_answer = True
        if self.in_dial and self.children:
            errors.append("a <Record> inside <Dial> cannot contain <Stream>")
        if self.ok("record_session", "start_on_dial_answer") and self.record_session and self.start_on_dial_answer:
            errors.append("recordSession and startOnDialAnswer cannot both be true")
        return errors

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        if self.transcription_url or "transcription_type" in self.present:
            call.error(f"<Record> line {self.line}: transcription is not supported by callfork yet; "
                       "the recording is made, no transcription callback will be sent")
        if self.record_channel_type == "mono" and "record_channel_type" in self.present and self.background:
            call.error(f"<Record recordChannelType=\"mono\"> line {self.line}: session recordings are "
                       "always stereo (caller left, what the caller hears right)")
        if self.start_on_dial_answer:
            # armed: the next <Dial> records its bridge (verbs/dial_recording.py)
            call.dial_record = self
            call.timeline("recording_armed", {"line": self.line})
            return
        if self.background:
            self._run_session(call)
        else:
            self._run_voicemail(call)

    def _run_voicemail(self, call) -> None:
        """Blocking: beep, record the caller until silence (timeout), maxLength, a finishOnKey digit
        (excluded from the file) or hangup; then action (Event=Record, with the results) and
        callbackUrl (Event=RecordStop)."""
        captured = self._record_caller(call)
        if captured is None:
            return
        rec, reason, record_ms, gone = captured
        rec.finish(reason, record_ms)
        params = rec.record_params("Record")
        if self.callback_url:
            call.post(self.callback_url, self.callback_method, rec.record_params("RecordStop"), "RecordStop")
        if gone is not None:
            if self.action:
                call.post(self.action, self.method, params, "Record")
            raise gone
        if self.action:
            if self.redirect:
                raise NextDocument(self.action, self.method, params, "action")
            call.post(self.action, self.method, params, "Record")

    def _record_caller(self, call):
        """Beep, then record the caller until silence, maxLength, a finishOnKey digit or hangup:
        (rec, end reason, FreeSWITCH's record_ms or None, CallGone or None), the Recording not
        finished yet; None when the verb was interrupted before recording."""
        call.ensure_answered()
        if call.interrupted.is_set():
            return None
        if self.play_beep:   # a hangup during the beep: nothing was recorded, nothing to report
            call.session.execute("playback", BEEP)
        if call.interrupted.is_set():
            return None
        call.session.set_var("playback_terminators", self.finish_on_key or "none")
        rec = Recording(call, self.file_format, "voicemail")
        gone = None
        with call.session.subscribe("RECORD_STOP") as stops, RecordAppLimit(call, rec, self.max_length) as limit:
            try:
                done = call.session.execute(
                    "record", f"{rec.wav_path} {limit.switch_limit_s} {SILENCE_THRESHOLD} {self.timeout}")
                call.session.set_var("playback_terminators", "none")
                rec.digits = done.get("variable_playback_terminator_used") or ""
                record_ms = _int(done.get("variable_record_ms"))
                if rec.digits:
                    reason = END_KEY
                elif done.get("variable_silence_hits_exhausted") == "true":
                    reason = END_TIMEOUT
                else:
                    reason = END_MAX_LENGTH
            except CallGone as exc:
                gone = exc
                reason, record_ms = END_HUNG_UP, None
                try:  # FreeSWITCH finishes the file at hangup and says so in RECORD_STOP
                    stop = stops.get(timeout=3)
                    record_ms = _int(stop.get("variable_record_ms"))
                except (CallGone, ESLTimeout):
                    record_ms = wav_duration_ms(rec.wav_path)
        if gone is not None and record_ms is None and not rec.wav_path.exists():
            rec.abandon("the call ended before FreeSWITCH started recording")
            raise gone
        return rec, reason, record_ms, gone

    def _run_session(self, call) -> None:
        """Non-blocking: record the whole call in stereo (caller left, what the caller hears right,
        including audio a stream injects) from now to hangup or maxLength. The action gets
        Event=Record at once (durations -1); callbackUrl gets Event=RecordStop when it ends.
        A nested <Stream> is started first, so that the recording's media bug comes after the
        fork's and records the stream's audio (verbs/recording.py BackgroundRecording)."""
        call.ensure_answered()
        rec = Recording(call, self.file_format, "session")
        recording = SessionRecording.for_verb(call, rec, self)
        if self.stream is not None:
            call.after_next_fork(lambda: self._start(call, recording))
            try:
                call.run_nested(self.stream)
            finally:
                call.after_next_fork(None)   # the stream never got as far as its fork: drop it
        self._start(call, recording)

    def _start(self, call, recording) -> None:
        recording.start()
        call.recordings.append(recording)
        if self.action:
            params = recording.rec.record_params("Record")
            if self.redirect and not self.stream:
                raise NextDocument(self.action, self.method, params, "action")
            call.post(self.action, self.method, params, "Record")
