"""The room's recording of a `<Conference record="true">` member (verbs/conferencing.py runs it):
started when the member joins, stopped when it leaves, and kept as `recordFileFormat` says.

FreeSWITCH records the room as WAV (`conference <room> recording start <path>`, mod_sndfile) into
the data directory; it stops with `conference <room> recording stop <path>` or when the room ends.
The recording's end is a room event (`stop-recording`, no Unique-ID), which the call's own socket
never gets (mod_event_socket's `myevents` sends only events of the call's channel), so after the
stop callfork waits for the file to be closed: its header then counts its bytes (libsndfile writes
the data size when it closes the file). Then verbs/recording.py's Recording.finish converts it to
MP3 when asked, as for `<Record>`, and the file is served at `<public_url>/recordings/<id>.<ext>`
(the RecordUrl of the action request).

A member who hung up cannot stop the recording (its socket is gone): when the room ended with it,
FreeSWITCH closed the file and it is finished as above; otherwise the room's recording goes on
until the room ends, and is kept as the WAV it is (an error says so; no action request carries it).
"""
from __future__ import annotations

import os
import time

import gevent
import soundfile

from esl_app import CallGone, ESLError, ESLTimeout

from .recording import Recording, wav_duration_ms

CLOSE_WAIT_S = 10.0          # how long FreeSWITCH gets to close the file after the stop
HUNG_UP_WAIT_S = 2.0         # ... after the member hung up (the room ended with it, or goes on)
END_LEFT = "ConferenceExit"
END_HUNG_UP = "HungUp"


def wav_closed(path) -> bool:
    """A WAV file its writer has closed: readable, and its header counts (nearly) all its bytes."""
    try:
        info = soundfile.info(str(path))
        size = os.path.getsize(path)
    except Exception:  # noqa: BLE001 - not there yet, or its header not written yet
        return False
    data = info.frames * info.channels * 2
    return data > 0 and size - data <= 4096


def _wait_closed(path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not wav_closed(path):
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(0.05)
    return True


class MemberRecording:
    """One member's recording of the room (the module docstring says how it ends)."""

    def __init__(self, call, room: str, where: str, file_format: str):
        self.call = call
        self.room = room                  # FreeSWITCH's room name
        self.where = where                # "<Conference> line N", for errors
        self.file_format = file_format
        self.rec = None

    @property
    def url(self) -> str | None:
        return self.rec.url if self.rec is not None else None

    def start(self) -> bool:
        call = self.call
        rec = Recording(call, self.file_format, "conference")
        try:
            reply = call.session.api(f"conference {self.room} recording start {rec.wav_path}")
        except (ESLError, ESLTimeout) as exc:
            reply = str(exc)
        if not reply.startswith("+OK"):
            call.error(f"{self.where}: the room's recording did not start: {reply.strip()}")
            rec.abandon("the room's recording did not start")
            return False
        self.rec = rec
        return True

    def stop(self, hung_up: bool) -> None:
        """The member left (hung_up: its call is gone): stop, wait for the file, finish it."""
        rec = self.rec
        if rec is None or rec.finished:
            return
        if not hung_up:
            try:
                self.call.session.api(f"conference {self.room} recording stop {rec.wav_path}")
            except (CallGone, ESLError, ESLTimeout):
                hung_up = True          # the room or the call is gone: the file closes with it, or not
        if not _wait_closed(rec.wav_path, HUNG_UP_WAIT_S if hung_up else CLOSE_WAIT_S):
            if rec.format != "wav":
                self.call.error(f"{self.where}: the room's recording goes on after the member "
                                f"{'hung up' if hung_up else 'left'}; kept as WAV, not {rec.format}")
                rec.format = "wav"
        rec.finish(END_HUNG_UP if hung_up else END_LEFT, wav_duration_ms(rec.wav_path))
