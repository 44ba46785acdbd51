"""<Record>: record the caller after a beep, until `timeout` seconds of silence, `maxLength`, a
`finishOnKey` key or hangup (https://www.twilio.com/docs/voice/twiml/record), on Vobiz <Record>'s
recording code (FreeSWITCH `record` into a WAV that callfork serves at /recordings/<id>, and as
.wav or .mp3).

- trim="trim-silence" (the default) cuts the silence before the first and after the last sound;
  "do-not-trim" keeps the file as recorded. A recording with no sound at all is empty: as Twilio does,
  no action is requested and the next verb runs (recordingStatusCallbackEvent `absent` says so).
- Otherwise the call goes on with the TwiML the action (default: the current document's URL) returns,
  requested with RecordingUrl, RecordingDuration (s), RecordingSid (`RE` + the recording id's hex,
  verbs/twiml/sids.py) and Digits (the key that ended it, or `hangup`) plus the call's parameters.
  When the caller hung up, the action is still posted (its answer is not run).
- recordingStatusCallback gets the events of recordingStatusCallbackEvent (default `completed`;
  `in-progress` when the recording starts, `absent` for an empty one) with Twilio's recording status
  parameters; transcribe is not supported (said in the log and the call record; the recording is made).
"""
from __future__ import annotations

import time
from pathlib import Path

import gevent
import numpy as np
from ..soundfile_threads import soundfile

from ..base import Attr, AttrError, Custom, Enum, Int
from ..flow import NextDocument
from ..vobiz.element import BOOL
from ..vobiz.record import Record as VobizRecord
from ..vobiz.record import _keys
from .element import METHOD, REL_URL, TwimlVerb, resolve
from .sids import call_sid, recording_sid, recording_url
from .status_callback import rfc2822

STATUS_EVENTS = ("in-progress", "completed", "absent")
FRAME = 160                 # 20 ms at 8 kHz
SOUND_LEVEL = 200           # mean absolute sample of a 20 ms frame above which it is sound, not silence


def _events(raw, warnings):
    words = str(raw).replace(",", " ").split()
    bad = [w for w in words if w not in STATUS_EVENTS]
    if not words or bad:
        raise AttrError(f'"{raw}" is not allowed; use one or more of {", ".join(STATUS_EVENTS)}')
    return tuple(e for e in STATUS_EVENTS if e in words)


def trim_silence(path, trim: bool) -> int:
    """Milliseconds of sound in the WAV at `path`, from its first to its last loud 20 ms frame (0: no
    sound at all); with `trim` the file is rewritten to hold only those. Runs in a thread."""
    data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    frame = max(1, rate * FRAME // 8000)
    mono = np.abs(data[:, 0].astype(np.int32))
    count = len(mono) // frame
    if count == 0:
        return 0
    levels = mono[:count * frame].reshape(count, frame).mean(axis=1)
    loud = np.flatnonzero(levels > SOUND_LEVEL)
    if len(loud) == 0:
        return 0
    first, last = int(loud[0]), int(loud[-1]) + 1
    if trim:
        soundfile.write(str(path), data[first * frame:last * frame], rate, subtype="PCM_16")
    return (last - first) * frame * 1000 // rate


class Record(TwimlVerb, VobizRecord):
    name = "Record"
    CHILDREN = ()
    ATTRIBUTES = (
        Attr("action", "action", REL_URL, None),
        Attr("method", "method", METHOD, "POST"),
        Attr("timeout", "timeout", Int(minimum=1), 5),               # seconds of silence
        Attr("finishOnKey", "finish_on_key", Custom(_keys, "keys from 1234567890*#"), "1234567890*#"),
        Attr("maxLength", "max_length", Int(1, 86400), 3600),
        Attr("playBeep", "play_beep", BOOL, True),
        Attr("trim", "trim", Enum("trim-silence", "do-not-trim"), "trim-silence"),
        Attr("recordingStatusCallback", "status_url", REL_URL, None),
        Attr("recordingStatusCallbackMethod", "status_method", METHOD, "POST"),
        Attr("recordingStatusCallbackEvent", "status_events", Custom(_events, "in-progress completed absent"),
             ("completed",)),
        Attr("transcribe", "transcribe", BOOL, False),
        Attr("transcribeCallback", "transcribe_callback", REL_URL, None),
    )
    # what Vobiz <Record>'s recording code reads that TwiML has no attribute for
    FIXED = {"file_format": "wav", "record_session": False, "start_on_dial_answer": False, "in_dial": False}

    def check(self):
        if self.transcribe or self.transcribe_callback:
            self.warnings.append("transcription is not supported by callfork: the recording is made, "
                                 "no transcription is sent")
        return []

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        if self.transcribe or self.transcribe_callback:
            call.error(f"<Record> line {self.line}: transcription is not supported by callfork; "
                       "the recording is made, no transcription callback will be sent")
        started = self._on_record_start(call)
        call.session.on_event("RECORD_START", started)
        try:
            captured = self._record_caller(call)
        finally:
            call.session.off_event("RECORD_START", started)
        if captured is None:
            return
        rec, reason, record_ms, gone = captured
        try:
            sound_ms = gevent.get_hub().threadpool.apply(trim_silence, (rec.wav_path, self.trim == "trim-silence"))
        except Exception as exc:   # a file FreeSWITCH did not finish: keep it as it is
            call.error(f"<Record> line {self.line}: could not read the recording ({exc}); kept untrimmed")
            sound_ms = record_ms or 0
        kept_ms = sound_ms if self.trim == "trim-silence" else record_ms
        rec.finish(reason, kept_ms)
        if sound_ms == 0:
            self._status(call, "absent", rec.id, rec.start_ms, 0)
            if gone is not None:
                raise gone
            return     # an empty recording: no action, the next verb runs
        self._status(call, "completed", rec.id, rec.start_ms, rec.duration_ms)
        digits = "hangup" if gone is not None else rec.digits
        params = call.params(RecordingUrl=recording_url(call.services.public_url, rec.id), RecordingDuration=_seconds(rec.duration_ms),
                             RecordingSid=recording_sid(rec.id), Digits=digits)
        url = resolve(call, self.action) or getattr(call, "document_url", None)
        if gone is not None:
            call.post(url, self.method, params, "Record")
            raise gone
        raise NextDocument(url, self.method, params, "action")

    def _on_record_start(self, call):
        """A RECORD_START callback posting `in-progress` (it runs in the ESL dispatch greenlet: the
        post, which writes the outbox, is spawned)."""
        def started(event):
            path = Path(event.get("Record-File-Path") or "")
            if path.parent == Path(call.services.recordings_dir):
                gevent.spawn(self._status, call, "in-progress", path.stem, time.time() * 1000, None)
        return started

    def _status(self, call, event: str, rec_id: str, start_ms: float, duration_ms) -> None:
        """The recordingStatusCallback for `event`, if the document asked for it."""
        if not self.status_url or event not in self.status_events:
            return
        url = recording_url(call.services.public_url, rec_id)
        params = {"AccountSid": call.auth_id, "CallSid": call_sid(call.uuid), "RecordingSid": recording_sid(rec_id),
                  "RecordingUrl": url, "RecordingStatus": event,
                  "RecordingDuration": _seconds(duration_ms or 0), "RecordingChannels": "1",
                  "RecordingSource": "RecordVerb", "RecordingStartTime": rfc2822(start_ms / 1000), "ErrorCode": "0"}
        call.post(resolve(call, self.status_url), self.status_method, params, f"recording:{event}")


def _seconds(ms: int) -> str:
    return str(max(0, int(round(ms / 1000))))
