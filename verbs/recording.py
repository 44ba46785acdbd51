"""One recording of a call: where FreeSWITCH writes it, how it is finished, what the callbacks say.

FreeSWITCH always records WAV (mod_sndfile) into the data directory; when the document asked for
MP3 the WAV is converted with soundfile in gevent's thread pool (the hub is never blocked) and the
WAV removed. The file is then served at `<public_url>/recordings/<RecordingID>.<ext>`.
`record_params()` gives the Vobiz Record/RecordStop fields (https://docs.vobiz.ai/xml/record).
"""
from __future__ import annotations

import logging
import os
import time
import uuid as uuidlib
from pathlib import Path

import gevent
from esl_app import CallGone

from .soundfile_threads import soundfile

log = logging.getLogger("callfork.recording")

END_TIMEOUT = "RecordingTimeout"
END_MAX_LENGTH = "maxLength"
END_KEY = "FinishedOnKey"
END_HUNG_UP = "HungUp"


def _convert_to_mp3(wav: Path, mp3: Path) -> None:
    data, rate = soundfile.read(str(wav), dtype="int16", always_2d=True)
    soundfile.write(str(mp3), data, rate, format="MP3")


class Recording:
    def __init__(self, call, file_format: str, kind: str):
        self.id = str(uuidlib.uuid4())
        self.call = call
        self.format = file_format          # "wav" | "mp3"
        self.kind = kind                   # "voicemail" | "session"
        self.wav_path = Path(call.services.recordings_dir) / f"{self.id}.wav"
        self.start_ms = int(time.time() * 1000)
        self.end_ms = None
        self.end_reason = None
        self.digits = ""
        self.finished = False
        call.services.store.add_recording(self.id, call.uuid, path=str(self.final_path),
                                          format=file_format, start_ms=self.start_ms)

    @property
    def final_path(self) -> Path:
        return self.wav_path.with_suffix("." + self.format)

    @property
    def url(self) -> str:
        return f"{self.call.services.public_url}/recordings/{self.id}.{self.format}"

    @property
    def duration_ms(self) -> int:
        if self.end_ms is None:
            return -1
        return max(0, self.end_ms - self.start_ms)

    def finish(self, reason: str, duration_ms: int | None = None) -> None:
        """The recording stopped: settle times, convert, and record it. Idempotent."""
        if self.finished:
            return
        self.finished = True
        self.end_reason = reason
        self.end_ms = int(time.time() * 1000)
        if duration_ms is not None and duration_ms >= 0:
            self.start_ms = self.end_ms - duration_ms
        if self.format == "mp3" and self.wav_path.exists():
            try:
                gevent.get_hub().threadpool.apply(_convert_to_mp3, (self.wav_path, self.final_path))
                os.unlink(self.wav_path)
            except Exception as exc:
                self.call.error(f"recording {self.id}: MP3 conversion failed ({exc}); keeping the WAV")
                self.format = "wav"
        if not self.final_path.exists():
            self.call.error(f"recording {self.id}: FreeSWITCH wrote no file at {self.wav_path}")
        self.call.services.store.update_recording(
            self.id, path=str(self.final_path), format=self.format, duration_ms=self.duration_ms,
            start_ms=self.start_ms, end_ms=self.end_ms, end_reason=reason)
        self.call.timeline("recording", {"id": self.id, "reason": reason, "duration_ms": self.duration_ms})

    def abandon(self, why: str) -> None:
        """Nothing was recorded (the call ended first): kept in the store as such, no callbacks."""
        if self.finished:
            return
        self.finished = True
        self.end_ms = self.start_ms
        self.call.services.store.update_recording(self.id, duration_ms=0, end_ms=self.end_ms,
                                                  end_reason="NotStarted")
        self.call.timeline("recording", {"id": self.id, "reason": "NotStarted", "detail": why})

    def record_params(self, event: str, **extra) -> dict:
        duration_ms = self.duration_ms
        fields = {
            "Event": event,
            "RecordingID": self.id,
            "RecordUrl": self.url,
            "RecordFile": self.url,
            "RecordingDuration": -1 if duration_ms < 0 else int(round(duration_ms / 1000)),
            "RecordingDurationMs": duration_ms,
            "RecordingStartMs": self.start_ms,
            "RecordingEndMs": -1 if self.end_ms is None else self.end_ms,
            "RecordingEndReason": self.end_reason or "",
            "Digits": self.digits,
        }
        fields.update(extra)
        return self.call.params(**fields)


def wav_duration_ms(path: Path) -> int | None:
    try:
        info = soundfile.info(str(path))
    except Exception:
        return None
    return int(info.frames * 1000 / info.samplerate)


class BackgroundRecording:
    """A `record_session` running while the document goes on (Vobiz recordSession / nested Stream,
    SWML record_call). `start()` attaches it; `reattach()` moves its media bug behind a stream's
    fork that was attached later. FreeSWITCH runs media bugs in the order they were attached, and
    a recording's bug copies each written frame when its turn comes: a bug attached before
    mod_audio_fork's SMBF_WRITE_REPLACE bug records the frame before the stream's audio is mixed
    in (switch_core_media.c, the write path). So after such a fork attaches, the recording is
    stopped and started again on the same file, appending (RECORD_APPEND); the one frame or two
    between the two is lost. The RECORD_STOP the restart causes is not the recording's end.

    A time limit (`limit_s`) is kept here, not by FreeSWITCH: record_session and uuid_record stop
    at `switch_epoch_time_now(NULL) + limit`, a whole second of the epoch clock, so a limit of n
    records n less the fraction of the second it started in (switch_ivr_async.c,
    switch_ivr_record_session_event; tests/fixtures/fs-captures/record-limit.json). FreeSWITCH is
    given the limit + 1 s (its stop then comes after ours, and still ends the file should callfork
    go away), and a timer stops the recording `limit_s` after it started (`arm_limit`)."""

    def __init__(self, call, rec: Recording, limit_s: int | None, rec_vars: dict):
        self.call = call
        self.rec = rec
        self.limit_s = limit_s
        self.rec_vars = dict(rec_vars)
        self.started = None
        self._expected_stops = 0
        self._limit_timer = None

    @property
    def switch_limit_s(self) -> int:
        """The limit FreeSWITCH is given (0: none): a second later than ours, as a safety net."""
        return self.limit_s + 1 if self.limit_s else 0

    def arm_limit(self) -> None:
        """The recording started (`self.started` set): stop it `limit_s` from now."""
        if self.limit_s and self._limit_timer is None:
            self._limit_timer = gevent.spawn_later(self.limit_s, self._limit_reached)

    def disarm_limit(self) -> None:
        timer, self._limit_timer = self._limit_timer, None
        if timer is not None and timer is not gevent.getcurrent():
            timer.kill(block=False)

    def at_limit(self) -> None:
        """Called just before the timer stops the recording (a subclass names the end reason)."""

    def _limit_reached(self) -> None:
        if self.rec.finished or self.call.session.gone:
            return
        self.at_limit()
        session = self.call.session
        try:
            reply = session.api(f"uuid_record {session.uuid} stop {self.rec.wav_path}")
        except CallGone:
            return   # the hangup finishes it (on_call_end)
        if not reply.startswith("+OK"):
            # FreeSWITCH stopped it already (its RECORD_STOP finishes it) or the call is going
            log.info("call %s: recording %s: uuid_record stop at the limit answered %s", self.call.uuid,
                     self.rec.id, reply.strip())

    @property
    def records_written_audio(self) -> bool:
        return self.rec_vars.get("RECORD_READ_ONLY") != "true"

    def start(self) -> None:
        session = self.call.session
        for name, value in self.rec_vars.items():
            session.set_var(name, value)
        limit = f" +{self.switch_limit_s}" if self.limit_s else ""
        session.execute("record_session", f"{self.rec.wav_path}{limit}")
        self.started = time.monotonic()
        self.arm_limit()
        self.call.timeline("recording_started", {"id": self.rec.id})

    def reattach(self) -> None:
        """Stop and start again on the same file, appending (`uuid_record`, an API: it does not
        wait behind the app the call is running). Runs in whichever greenlet attached the fork."""
        if self.rec.finished or self.started is None or not self.records_written_audio:
            return
        limit = 0
        if self.limit_s:
            left = self.limit_s - (time.monotonic() - self.started)
            if left <= 0:
                return
            limit = int(left) + 2   # whole seconds, after our own timer's stop (arm_limit)
        variables = dict(self.rec_vars, RECORD_APPEND="true")
        args = ",".join(f"{k}={v}" for k, v in variables.items())
        session = self.call.session
        path = str(self.rec.wav_path)
        self._expected_stops += 1
        stopped = session.api(f"uuid_record {session.uuid} stop {path}")
        if not stopped.startswith("+OK"):
            self._expected_stops -= 1
            self.call.error(f"recording {self.rec.id}: could not move it behind the stream's audio "
                            f"({stopped.strip()}); it will not contain what the stream plays")
            return
        started = session.api(f"uuid_record {session.uuid} start {path} {limit} {{{args}}}")
        if not started.startswith("+OK"):
            self.call.error(f"recording {self.rec.id}: FreeSWITCH did not restart it ({started.strip()}); "
                            "the file ends here")
            return
        self.call.timeline("recording_reattached", {"id": self.rec.id})

    def is_our_stop(self, event) -> bool:
        """A RECORD_STOP that ends this recording (not one of reattach(), not after hangup). The
        RECORD_STOP of reattach()'s stop may come after its api reply: it is counted, not timed."""
        if event.get("Record-File-Path") != str(self.rec.wav_path):
            return False
        if self._expected_stops:
            self._expected_stops -= 1
            return False
        return not self.call.session.gone


class SessionRecording(BackgroundRecording):
    """A recording running in the background that ends on its own RECORD_STOP (maxLength, or a stop
    asked for: `stop_reason`) or at hangup, then posts its RecordStop callback (after the hangup
    webhook when the call ended, as on Vobiz). A <Record recordSession>'s (`for_verb`), and the
    REST API's (verbs/api_recording.py), which adds its own callback fields (`callback_params`)."""

    def __init__(self, call, rec: Recording, limit_s, rec_vars: dict, callback_url, callback_method):
        super().__init__(call, rec, limit_s, rec_vars)
        self.callback_url = callback_url
        self.callback_method = callback_method or "POST"
        self.stop_reason = None

    @classmethod
    def for_verb(cls, call, rec: Recording, verb) -> "SessionRecording":
        recording = cls(call, rec, verb.max_length, {"RECORD_STEREO": "true"}, verb.callback_url,
                        verb.callback_method)
        recording.follow_stops()
        return recording

    def follow_stops(self) -> None:
        self.call.session.on_event("RECORD_STOP", self._on_record_stop)

    def _on_record_stop(self, event) -> None:
        # runs in the ESL dispatch greenlet: never block here
        if not self.is_our_stop(event):
            return
        try:
            duration = int(event.get("variable_record_ms") or "")
        except ValueError:
            duration = None
        gevent.spawn(self._finish, self.stop_reason or END_MAX_LENGTH, duration)

    def on_call_end(self, complete) -> None:
        self._finish(END_HUNG_UP, wav_duration_ms(self.rec.wav_path))

    def at_limit(self) -> None:
        self.stop_reason = self.stop_reason or END_MAX_LENGTH

    def _finish(self, reason: str, duration_ms) -> None:
        if self.rec.finished:
            return
        self.disarm_limit()
        self.call.session.off_event("RECORD_STOP", self._on_record_stop)
        self.rec.finish(reason, duration_ms)
        if self.callback_url:
            self.call.post(self.callback_url, self.callback_method, self.callback_params(), "RecordStop")

    def callback_params(self) -> dict:
        return self.rec.record_params("RecordStop")


class RecordAppLimit:
    """FreeSWITCH's `record` app (a blocking <Record>) ends at its limit `limit_s` exactly: with the
    limit given to the app, it stops once `switch_epoch_time_now(NULL) - start > limit` in whole
    seconds (switch_ivr_play_say.c, switch_ivr_record_file_event), limit to limit + 1 s after it
    started. Used as `with RecordAppLimit(call, rec, limit_s) as limit:` around executing
    `record <path> {limit.switch_limit_s} ...`: FreeSWITCH gets a second more (its own stop then
    comes well after ours), and `limit_s` after the app's RECORD_START a timer ends the app with
    `uuid_break` (CF_BREAK: the app returns, no digit, no silence: the end reads as maxLength).
    The timer is cancelled when the block ends; a silence or key ending the app within the
    milliseconds before the timer's uuid_break reaches FreeSWITCH would let that break reach the
    next app."""

    def __init__(self, call, rec: Recording, limit_s: int):
        self.call = call
        self.path = str(rec.wav_path)
        self.limit_s = limit_s
        self.switch_limit_s = limit_s + 1
        self._timer = None
        self._done = False

    def __enter__(self) -> "RecordAppLimit":
        self.call.session.on_event("RECORD_START", self._on_start)
        return self

    def __exit__(self, *exc) -> None:
        self._done = True
        self.call.session.off_event("RECORD_START", self._on_start)
        if self._timer is not None:
            self._timer.kill(block=False)

    def _on_start(self, event) -> None:
        # runs in the ESL dispatch greenlet: never block here
        if event.get("Record-File-Path") == self.path and self._timer is None and not self._done:
            self._timer = gevent.spawn_later(self.limit_s, self._break)

    def _break(self) -> None:
        session = self.call.session
        if self._done or session.gone:
            return
        try:
            session.api(f"uuid_break {session.uuid}")
        except CallGone:
            pass
