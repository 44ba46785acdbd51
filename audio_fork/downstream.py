"""The app's audio on its way to the caller: a playAudio/media message's payload (mu-law, or L16
little or big endian, at 8, 16 or 24 kHz) -> L16 8 kHz little endian, what both playouts take.
One resampler per source rate, kept across messages so an utterance sent in pieces is resampled
as one; `flush` gives back what the resamplers still hold (before a mark: its audio plays in
full), `reset` forgets it (a clear)."""
from __future__ import annotations

from . import codecs
from .module_buffer import PLAYOUT_RATE

__all__ = ["Downstream"]


class Downstream:
    def __init__(self, l16_byte_order: str = "le"):
        self._be = l16_byte_order == "be"
        self._resample: dict = {}

    def convert(self, audio: bytes, encoding: str, sample_rate: int) -> bytes:
        if encoding == "mulaw":
            pcm = codecs.ulaw_decode(audio)
        elif self._be:
            pcm = codecs.byteswap16(audio)
        else:
            pcm = audio
        if sample_rate != PLAYOUT_RATE:
            rs = self._resample.get(sample_rate)
            if rs is None:
                rs = self._resample[sample_rate] = codecs.Resampler(sample_rate, PLAYOUT_RATE)
            pcm = rs.process(pcm)
        return pcm

    def flush(self) -> list:
        tails = [tail for tail in (rs.flush() for rs in self._resample.values()) if tail]
        self._resample.clear()
        return tails

    def reset(self) -> None:
        self._resample.clear()
