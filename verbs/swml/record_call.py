"""SWML record_call: start a background recording of the call.

FreeSWITCH's record_session records while the document goes on: `stereo` puts the caller on the
left and what the caller hears on the right (RECORD_STEREO); `direction` speak = the caller only
(RECORD_READ_ONLY), listen = what the caller hears only (RECORD_WRITE_ONLY), both = both. The file
is served at `record_call_url`; it is finished by stop_record_call, max_length or hangup, and then
`calling.call.record` (state finished, params.record {url, duration, size, format}) goes to
status_url. terminators, input_sensitivity and the silence timeouts are not applied (logged).
"""
import os

import gevent

from ..base import Attr, Enum, Float, Int, Text
from ..errors import NotSupportedError
from ..recording import BackgroundRecording, Recording, wav_duration_ms
from .method import BOOL, HTTP_URL, SwmlMethod, call_registry, call_vars, swml_event

BEEP = "tone_stream://%(500,0,1000)"


class RecordCall(SwmlMethod):
    name = "record_call"
    ATTRIBUTES = (
        Attr("control_id", "control_id", Text(nonempty=True), None),
        Attr("stereo", "stereo", BOOL, False),
        Attr("format", "format", Enum("wav", "mp3", "mp4"), "wav"),
        Attr("direction", "direction", Enum("speak", "listen", "both"), "both"),
        Attr("terminators", "terminators", Text(pattern=r"[0-9*#]*", pattern_desc="keys from 0-9, *, #"), ""),
        Attr("beep", "beep", BOOL, False),
        Attr("input_sensitivity", "input_sensitivity", Float(0, 100), 44.0),
        Attr("initial_timeout", "initial_timeout", Float(minimum=0), 0.0),
        Attr("end_silence_timeout", "end_silence_timeout", Float(minimum=0), 0.0),
        Attr("max_length", "max_length", Int(minimum=1), None),
        Attr("status_url", "status_url", HTTP_URL, None),
    )

    def run(self, call) -> None:
        if self.format == "mp4":
            raise NotSupportedError("record_call format mp4 is not supported by callfork; use wav or mp3",
                                    self.line, self.column, "record_call")
        ignored = [n for n in ("terminators", "initial_timeout", "end_silence_timeout") if n in self.present]
        if ignored:
            call.timeline("warning", {"message": f"record_call: {', '.join(ignored)} not applied by callfork"})
        call.ensure_answered()
        variables = call_vars(call)
        rec = Recording(call, self.format, "session")
        control_id = self.control_id or rec.id
        if self.beep:
            call.session.execute("playback", BEEP)
        handle = SwmlRecording(call, rec, control_id, self.status_url, self.max_length, {
            "RECORD_STEREO": "true" if self.stereo else "false",
            "RECORD_READ_ONLY": "true" if self.direction == "speak" else "false",
            "RECORD_WRITE_ONLY": "true" if self.direction == "listen" else "false"})
        handle.start()
        call_registry(call, "recordings")[control_id] = handle
        call.recordings.append(handle)
        variables.update(record_call_url=rec.url, record_call_result="success", record_control_id=control_id)


class SwmlRecording(BackgroundRecording):
    """One record_call: finished by stop_record_call, by max_length (RECORD_STOP) or at hangup."""

    def __init__(self, call, rec: Recording, control_id: str, status_url: str | None,
                 max_length: int | None, rec_vars: dict):
        super().__init__(call, rec, max_length, rec_vars)
        self.control_id = control_id
        self.status_url = status_url
        call.session.on_event("RECORD_STOP", self._on_record_stop)

    def _on_record_stop(self, event) -> None:
        if not self.is_our_stop(event):
            return
        gevent.spawn(self.finish, "maxLength")   # runs in the ESL dispatch greenlet: never block

    def stop(self) -> None:
        """stop_record_call: stop recording now and finish the file. The RECORD_STOP this causes
        comes before the app's EXECUTE_COMPLETE: stop listening first, or it reads as maxLength."""
        self.call.session.off_event("RECORD_STOP", self._on_record_stop)
        self.call.session.execute("stop_record_session", str(self.rec.wav_path))
        self.finish("stopped")

    def on_call_end(self, complete) -> None:
        self.finish("HungUp")

    def finish(self, reason: str) -> None:
        if self.rec.finished:
            return
        self.call.session.off_event("RECORD_STOP", self._on_record_stop)
        self.rec.finish(reason, wav_duration_ms(self.rec.wav_path))
        if self.status_url:
            path = self.rec.final_path
            size = os.path.getsize(path) if path.exists() else 0
            record = {"url": self.rec.url, "duration": max(0, self.rec.duration_ms) / 1000.0, "size": size,
                      "format": self.rec.format}
            self.call.post(self.status_url, "POST",
                           swml_event(self.call, "calling.call.record",
                                      {"control_id": self.control_id, "state": "finished", "record": record}),
                           "calling.call.record", encoding="json")
