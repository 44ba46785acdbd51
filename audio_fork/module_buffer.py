"""`ModuleBuffer`: what the caller is hearing of the app's audio, by the clock. For the jambonz
build it models what mod_audio_fork holds of the audio we sent; the file playback (drachtio build)
uses its two end times only."""
from __future__ import annotations

__all__ = ["ModuleBuffer", "PLAYOUT_RATE", "PLAYOUT_FRAME"]

PLAYOUT_RATE = 8000          # what the pacer sends to the module (`true true 8000`)
PLAYOUT_FRAME = 320          # 20 ms of L16 8 kHz mono


class ModuleBuffer:
    """What mod_audio_fork (jambonz, `true true 8000`) holds of the audio we sent, modelled on its
    source (lws_glue.cpp processIncomingBinary / dub_speech_frame; the simulator does the same):
    incoming samples collect in a prebuffer that moves to the playout buffer only once it holds
    `threshold` samples (1280 the first time, then 640), and the playout buffer drains 160 samples
    per 20 ms. So the last <80 ms of an utterance would wait in the prebuffer for the next one, and
    the caller hears a frame ~160 ms after we send it. The pacer uses this to pad an utterance's end
    with silence until it is flushed, and to ack a checkpoint/mark only once its audio was heard."""

    def __init__(self, rate: int = PLAYOUT_RATE):
        df = max(1, rate // 8000)
        self.threshold = 320 * df * 4
        self.next_threshold = 320 * df * 2
        self.pending = 0               # samples in the module's prebuffer
        self.pending_audio = 0         # ... up to the end of the last one that was not padding
        self.heard_end = 0.0           # monotonic time when everything flushed so far has played
        self.audio_end = 0.0           # ... and when the last non-padding sample has played

    def playing(self, now: float) -> bool:
        """The caller is still hearing audio the module took from us."""
        return self.heard_end > now

    def killed(self, now: float) -> None:
        """killAudio emptied the module's playout (its prebuffer was flushed into it first), or the
        file playing was broken off."""
        self.pending = self.pending_audio = 0
        self.heard_end = self.audio_end = now

    def push(self, samples: int, now: float, padding: bool = False) -> bool:
        """`samples` sent at `now` (`padding`: silence we added); True when that flushed the
        prebuffer into playout."""
        self.pending += samples
        if not padding:
            self.pending_audio = self.pending
        if self.pending < self.threshold:
            return False
        start = max(self.heard_end, now)
        if self.pending_audio:
            self.audio_end = start + self.pending_audio / PLAYOUT_RATE
        self.heard_end = start + self.pending / PLAYOUT_RATE
        self.pending = self.pending_audio = 0
        self.threshold = self.next_threshold
        return True

    def played_from(self, now: float, seconds: float) -> None:
        """Audio of `seconds` starts playing after what plays already (a file, one after another)."""
        self.audio_end = self.heard_end = max(self.heard_end, now) + seconds
