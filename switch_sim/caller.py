"""The scripted caller on the far end of a simulated call, and the handle returned by place_call.

Owns: `CallScript` (what the caller does: number dialled, caller id, the audio they speak, DTMF at
given seconds after the call starts, when they hang up, where to save what they heard),
`CallerModel` (feeds the channel's read frames from the script audio once media is up — resampled
to 8 kHz mono, silence after it ends; with `vad`, a silent frame is not sent at all (CNG) —, queues the scripted DTMF, hangs up at `hangup_after`
with NORMAL_CLEARING (the far end hanging up), keeps every write frame as
the heard capture and saves it as a WAV when the call ends) and `SimCall` (`uuid`, `channel`,
`wait(timeout) -> summary dict`).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from .media import FRAME_SAMPLES, RATE, MediaError, load_audio

log = logging.getLogger('switch_sim.caller')


@dataclasses.dataclass
class CallScript:
    to: str
    from_: str = '15551230001'
    audio: str | None = None
    dtmf: list = dataclasses.field(default_factory=list)     # [(digits, seconds_after_start), ...]
    hangup_after: float | None = None
    save_heard: str | None = None
    caller_name: str = ''
    variables: dict = dataclasses.field(default_factory=dict)
    keep_heard: bool = False          # keep the heard audio in memory (SimCall.heard()) without a file
    vad: bool = False                 # the phone sends no packet for a silent frame: FreeSWITCH reads CNG

    def validate(self) -> None:
        for item in self.dtmf:
            if len(item) != 2:
                raise ValueError('dtmf entries are (digits, seconds)')
            digits, when = item
            float(when)
            if not str(digits) or any(c not in '0123456789*#ABCDabcd' for c in str(digits)):
                raise ValueError('bad DTMF digits %r' % (digits,))


class CallerModel:
    def __init__(self, script: CallScript, audio: np.ndarray | None = None):
        self.script = script
        self.audio = audio if audio is not None else np.zeros(0, dtype=np.int16)
        self.pos = 0
        self.media_up = False
        self.pending_dtmf = sorted(((float(when), str(d)) for d, when in script.dtmf), key=lambda x: x[0])
        self.hangup_sent = False
        self.capture = script.save_heard is not None or script.keep_heard
        self.heard: list[bytes] = []

    @classmethod
    def from_script(cls, script: CallScript) -> 'CallerModel':
        audio = None
        if script.audio:
            audio = load_audio(script.audio, RATE)   # raises MediaError
        return cls(script, audio)

    def media_started(self, ch) -> None:
        self.media_up = True

    def read_frame(self):
        """The caller's next 20 ms (silence after the script's audio), or None for a frame the
        phone did not send (`vad` and all zero): the channel reads CNG then."""
        if self.pos >= len(self.audio):
            return None if self.script.vad else np.zeros(FRAME_SAMPLES, dtype=np.int16)
        chunk = self.audio[self.pos:self.pos + FRAME_SAMPLES]
        self.pos += FRAME_SAMPLES
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), dtype=np.int16)])
        if self.script.vad and not chunk.any():
            return None
        return chunk

    def tick(self, ch, write: np.ndarray, elapsed: float) -> None:
        if self.capture and self.media_up:
            self.heard.append(write.tobytes())
        while self.pending_dtmf and self.pending_dtmf[0][0] <= elapsed:
            _, digits = self.pending_dtmf.pop(0)
            for d in digits:
                ch.queue_dtmf(d.upper())
        if (self.script.hangup_after is not None and not self.hangup_sent
                and elapsed >= float(self.script.hangup_after)):
            self.hangup_sent = True
            ch.hangup('NORMAL_CLEARING')

    def heard_samples(self) -> np.ndarray:
        return np.frombuffer(b''.join(self.heard), dtype=np.int16)

    def finished(self, ch) -> None:
        if self.script.save_heard:
            import soundfile
            try:
                soundfile.write(self.script.save_heard, self.heard_samples(), RATE, subtype='PCM_16',
                                format='WAV')
            except Exception as exc:
                log.error('[%s] cannot save heard audio to %s: %s', ch.uuid, self.script.save_heard, exc)


def _until_hangup_complete(names):
    names = list(names)
    if 'CHANNEL_HANGUP_COMPLETE' in names:
        return names[:names.index('CHANNEL_HANGUP_COMPLETE') + 1]
    return names


class SimCall:
    def __init__(self, channel, caller: CallerModel):
        self.channel = channel
        self.caller = caller

    @property
    def uuid(self) -> str:
        return self.channel.uuid

    def heard(self) -> np.ndarray:
        return self.caller.heard_samples()

    def summary(self) -> dict:
        ch = self.channel
        return {
            'uuid': ch.uuid,
            'answered': bool(ch.answered_us),
            'hangup_cause': ch.hangup_cause,
            'duration_s': round(ch.duration_s, 3),
            'events': _until_hangup_complete(ch.events_fired),
            'to': ch.destination,
            'from': ch.caller_number,
        }

    def wait(self, timeout: float | None = 30.0) -> dict:
        """Wait for CHANNEL_HANGUP_COMPLETE; returns the summary. Raises TimeoutError."""
        if not self.channel.gone.wait(timeout):
            raise TimeoutError('call %s still up after %ss' % (self.uuid, timeout))
        return self.summary()


__all__ = ['CallScript', 'CallerModel', 'SimCall', 'MediaError']
