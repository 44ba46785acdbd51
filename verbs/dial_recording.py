"""<Record startOnDialAnswer="true"> (nested in <Dial>, or before it): record the bridged
conversation, from the moment a callee is connected to the end of the bridge, in stereo (the
caller left, the callee right; or both mixed in one channel when the verb's `stereo` is false: TwiML
<Dial record="record-from-answer">), then post the Record's action (Event=Record, as its redirect="false"
form: the Dial decides what runs next) and its callbackUrl (Event=RecordStop).

The caller's channel is running `bridge` meanwhile, so the recording is started and stopped with
the `uuid_record` API, which does not wait behind the running app. `maxLength`, when the document
gives it, limits the recording; otherwise it lasts as long as the bridge. The limit is kept here, as
verbs/recording.py's BackgroundRecording keeps its own: uuid_record stops at a whole second of the
epoch clock, up to a second early, so FreeSWITCH is given a second more and a timer stops the
recording at the limit.
"""
from __future__ import annotations

import gevent

from esl_app import CallGone

from .recording import END_HUNG_UP, END_MAX_LENGTH, Recording, wav_duration_ms


class DialRecording:
    def __init__(self, call, verb):
        self.call = call
        self.verb = verb
        self.rec = None
        self._limit_timer = None
        self._limit_reached = False

    @property
    def limit_s(self) -> int:
        return self.verb.max_length if "max_length" in self.verb.present else 0

    def start(self) -> None:
        """The callee was connected: start recording (once)."""
        if self.rec is not None:
            return
        call, session = self.call, self.call.session
        self.rec = Recording(call, self.verb.file_format, "session")
        stereo = "true" if getattr(self.verb, "stereo", True) else "false"
        try:
            limit = self.limit_s + 1 if self.limit_s else 0   # FreeSWITCH's stop: a safety net
            reply = session.api(f"uuid_record {session.uuid} start {self.rec.wav_path} {limit} "
                                f"{{RECORD_STEREO={stereo}}}")
        except CallGone:
            reply = "-ERR the call ended"
        if not reply.startswith("+OK"):
            call.error(f"<Record> line {self.verb.line}: FreeSWITCH did not start recording the bridged "
                       f"call ({reply.strip()})")
            self.rec.abandon("FreeSWITCH did not start it")
            self.rec = None
            return
        call.timeline("recording_started", {"id": self.rec.id, "dial": True})
        if self.limit_s:
            self._limit_timer = gevent.spawn_later(self.limit_s, self._at_limit)

    def _at_limit(self) -> None:
        rec, session = self.rec, self.call.session
        if rec is None or rec.finished or session.gone:
            return
        self._limit_reached = True
        try:
            session.api(f"uuid_record {session.uuid} stop {rec.wav_path}")
        except CallGone:
            pass

    def stop(self) -> None:
        """The bridge ended: stop, finish the file and post the callbacks."""
        rec, call, session = self.rec, self.call, self.call.session
        if rec is None or rec.finished:
            return
        timer, self._limit_timer = self._limit_timer, None
        if timer is not None and timer is not gevent.getcurrent():
            timer.kill(block=False)
        if not session.gone and not self._limit_reached:
            try:
                session.api(f"uuid_record {session.uuid} stop {rec.wav_path}")
            except CallGone:
                pass
        duration_ms = wav_duration_ms(rec.wav_path)
        rec.finish(END_MAX_LENGTH if self._limit_reached else END_HUNG_UP, duration_ms)
        if self.verb.action:
            call.post(self.verb.action, self.verb.method, rec.record_params("Record"), "Record")
        if self.verb.callback_url:
            call.post(self.verb.callback_url, self.verb.callback_method, rec.record_params("RecordStop"),
                      "RecordStop")
