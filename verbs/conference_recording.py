"""The room's recording of a `<Conference record="true">` member (verbs/conferencing.py runs it):
started when the member joins, stopped when it leaves, and kept as `recordFileFormat` says.

The recording belongs to the room (callfork/room_recordings.py, reached as
`call.services.room_recordings`): FreeSWITCH records the room as WAV (`conference <room> recording
start <path>`, mod_sndfile) into the data directory, and whoever stops it (this member when it
leaves, the REST API's `DELETE .../Conference/<name>/Record/`, or the room's end) FreeSWITCH closes
the file and fires stop-recording, on which the registry calls `_room_stopped`: verbs/recording.py's
Recording.finish converts it to MP3 when asked, as for `<Record>`, and the file is served at
`<public_url>/recordings/<id>.<ext>` (the RecordUrl of the action request).

A member who leaves stops the recording and waits for it to be finished before its action request
(the RecordUrl serves the whole file); if no stop-recording comes (the event connection dropped)
it finishes the file once FreeSWITCH has closed it (its WAV header then counts its bytes). A member
who hung up cannot ask anything any more: the recording goes on with the room until the REST API
stops it or the room ends, and is finished then (no action request carries it: the call is gone).
"""
from __future__ import annotations

import os
import time

import gevent
import gevent.event
from .soundfile_threads import soundfile

from .recording import Recording, wav_duration_ms

CLOSE_WAIT_S = 10.0          # how long FreeSWITCH gets to close the file after the stop
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
        self.room_rec = None
        self.end_reason = END_HUNG_UP     # until the member leaves alive
        self.done = gevent.event.Event()  # set once the recording is finished

    @property
    def url(self) -> str | None:
        return self.rec.url if self.rec is not None else None

    def start(self) -> bool:
        call = self.call
        rec = Recording(call, self.file_format, "conference")
        try:
            self.room_rec = call.services.room_recordings.start(self.room, str(rec.wav_path), self._room_stopped)
        except Exception as exc:  # noqa: BLE001 - RoomRecordingFailed: FreeSWITCH's reply, or no events
            call.error(f"{self.where}: the room's recording did not start: {exc}")
            rec.abandon("the room's recording did not start")
            return False
        self.rec = rec
        return True

    def _room_stopped(self, elapsed_ms) -> None:
        """The recording has ended, whoever ended it (the registry's greenlet): finish it."""
        rec = self.rec
        try:
            if rec is not None and not rec.finished:
                duration = elapsed_ms if elapsed_ms is not None else wav_duration_ms(rec.wav_path)
                rec.finish(self.end_reason, duration)
        finally:
            self.done.set()

    def stop(self, hung_up: bool) -> None:
        """The member left (hung_up: its call is gone, the recording goes on with the room)."""
        rec = self.rec
        if rec is None:
            return
        if rec.finished:
            # the room's stop got here first and is finishing it (an MP3 conversion runs in a thread):
            # the action request that follows must find the whole file
            if not hung_up:
                self.done.wait(CLOSE_WAIT_S)
            return
        if hung_up:
            self.call.timeline("recording_left_with_the_room", {"id": rec.id})
            return
        self.end_reason = END_LEFT
        try:
            self.call.services.room_recordings.stop(self.room_rec)
        except Exception as exc:  # noqa: BLE001 - the room ended meanwhile: its stop finishes the file
            self.call.error(f"{self.where}: could not stop the room's recording: {exc}")
        if self.done.wait(CLOSE_WAIT_S):
            return
        # no stop-recording came: finish the file once FreeSWITCH has closed it
        if not _wait_closed(rec.wav_path, 0) and rec.format != "wav":
            self.call.error(f"{self.where}: the room's recording did not end when the member left; "
                            f"kept as WAV, not {rec.format}")
            rec.format = "wav"
        rec.finish(END_LEFT, wav_duration_ms(rec.wav_path))
        self.done.set()
