"""A recording the REST API started on a live call (`POST .../Call/{uuid}/Record/`): `ApiRecording`.

It is a `recording.Recording` like any other (in the call's records, served at
`/recordings/<id>.<ext>`), written by FreeSWITCH's `uuid_record` (a media bug, so the document's
verbs go on untouched). It ends at its time limit (a timer stops the bug exactly then, as
FreeSWITCH's own limit ends on a whole second: `BackgroundRecording.arm_limit`; RECORD_STOP), at
`stop()` (`DELETE .../Record/`: `uuid_record ... stop`, then the same RECORD_STOP) or at hangup
(the interpreter calls `on_call_end` for every recording in `call.recordings`). When it ends, the
callback URL gets Vobiz's Record API callback fields (https://docs.vobiz.ai/call/record-calls/start-recording:
api_id, record_url, call_uuid, recording_id, recording_duration[_ms], recording_start_ms,
recording_end_ms) together with the RecordStop fields a <Record> callback carries
(docs/decisions.md, "REST live-call controls").

A stream that mixes audio into the call and starts later moves the recording behind its fork, as
for <Record recordSession> (`BackgroundRecording.reattach`).
"""
from __future__ import annotations

import logging
import time

import gevent

from .recording import Recording, SessionRecording, wav_duration_ms

log = logging.getLogger("callfork.recording")

END_STOPPED = "RecordingStopped"   # DELETE .../Record/ (Vobiz names no reason for it)


class RecordingNotStarted(Exception):
    """FreeSWITCH refused `uuid_record ... start` (its reply is the message)."""


class ApiRecording(SessionRecording):
    def __init__(self, call, file_format: str, time_limit_s: int, stereo: bool, callback_url: str,
                 callback_method: str, api_id: str):
        rec = Recording(call, file_format, "api")
        super().__init__(call, rec, time_limit_s, {"RECORD_STEREO": "true" if stereo else "false"},
                         callback_url, callback_method)
        self.api_id = api_id

    @property
    def url(self) -> str:
        return self.rec.url

    @property
    def finished(self) -> bool:
        return self.rec.finished

    def start(self, api) -> None:
        """Attach the recording with `api` (the control connection's `api`); raises RecordingNotStarted."""
        self.follow_stops()
        args = ",".join(f"{k}={v}" for k, v in self.rec_vars.items())
        reply = api(f"uuid_record {self.call.uuid} start {self.rec.wav_path} {self.switch_limit_s} {{{args}}}")
        if not reply.startswith("+OK"):
            self.call.session.off_event("RECORD_STOP", self._on_record_stop)
            self.rec.abandon(f"FreeSWITCH refused uuid_record: {reply.strip()}")
            raise RecordingNotStarted(reply.strip())
        self.started = time.monotonic()
        self.arm_limit()
        self.call.recordings.append(self)   # finished by the interpreter at hangup, like a <Record>'s
        self.call.timeline("recording_started", {"id": self.rec.id, "source": "api"})

    def stop(self, api) -> None:
        """Stop it now; the RECORD_STOP that follows finishes it (and posts the callback)."""
        if self.rec.finished:
            return
        self.stop_reason = END_STOPPED
        reply = api(f"uuid_record {self.call.uuid} stop {self.rec.wav_path}")
        if not reply.startswith("+OK"):
            # already stopped by FreeSWITCH (time limit) or the call is going: finish from the file
            log.info("call %s: recording %s: uuid_record stop answered %s", self.call.uuid, self.rec.id,
                     reply.strip())
            gevent.spawn(self._finish, END_STOPPED, wav_duration_ms(self.rec.wav_path))

    def callback_params(self) -> dict:
        rec = self.rec
        duration_ms = max(rec.duration_ms, 0)
        return rec.record_params(
            "RecordStop", api_id=self.api_id, record_url=rec.url, call_uuid=self.call.uuid,
            recording_id=rec.id, recording_duration=int(round(duration_ms / 1000)),
            recording_duration_ms=duration_ms, recording_start_ms=rec.start_ms,
            recording_end_ms=rec.end_ms if rec.end_ms is not None else -1)
