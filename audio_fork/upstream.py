"""The caller's audio on its way to the app: mod_audio_fork's binary messages (L16 at the fork's
rate, mono or stereo, in whatever sizes the module sends) -> 20 ms frames -> per track, the app's
encoding and rate (mu-law, L16 little or big endian, 24 kHz resampled from the fork's 16 kHz) ->
the dialect's `media` texts, each stamped with its track's running time.

The usual stream (one track of L16, little endian, at the fork's rate) takes a short path: each
frame is the payload as it came (`plain`). `pump` is the module reader: it runs in the relay's
connection greenlet until the module's connection ends."""
from __future__ import annotations

import logging

from . import codecs
from .command import mix_for_track
from .framing import FrameAssembler, frame_bytes

log = logging.getLogger("callfork.audio_fork.session")

__all__ = ["Upstream"]


class Upstream:
    """`feed(msg)` -> the media texts for the app, in order; `frames` counts the 20 ms frames
    taken from the module."""

    def __init__(self, spec, dialect):
        self.dialect = dialect
        self.mix = mix_for_track(spec.track)
        self.both = spec.track == "both"
        channels = 2 if self.mix == "stereo" else 1
        self._assembler = FrameAssembler(frame_bytes(spec.fork_rate, channels))
        self._tracks = ["inbound", "outbound"] if self.both else [spec.track]
        self._mulaw = spec.encoding == "mulaw"
        self._be = spec.l16_byte_order == "be"
        self._resample = {}    # track -> (resampler, re-framer): only L16 24k (from the fork's 16k)
        if spec.encoding == "l16" and spec.sample_rate != spec.fork_rate:
            for t in self._tracks:
                self._resample[t] = (codecs.Resampler(spec.fork_rate, spec.sample_rate),
                                     FrameAssembler(frame_bytes(spec.sample_rate)))
        self._sent = {t: 0 for t in ("inbound", "outbound")}   # frames per track, for the timestamps
        self.plain = self.mix == "mono" and not self._mulaw and not self._resample and not self._be
        self.frames = 0

    def pump(self, conn, sender, relay, label: str) -> None:
        """Module messages -> the app (through `sender`), until the module's connection ends. No
        receive timeout (it would cost a timer per read): the loop ends when the module closes, or
        when the stream or the relay closes it (a module that does not answer the Close is dropped
        after the connection's close_timeout)."""
        first_text = True
        receive = conn.receive_batch
        send = sender.send
        while True:
            msgs = receive(None)
            if msgs is None:
                return
            held = len(msgs) > 1
            if held:
                # one recv brought several messages (the relay is behind): what they produce goes
                # to the app in one write once they are all handled, not one write each
                sender.hold()
            for msg in msgs:
                if msg.__class__ is str:
                    log.debug("%s module %s: %s", label, "metadata" if first_text else "text", msg[:200])
                    first_text = False
                    continue
                if not msg:
                    continue  # graceful-shutdown marker
                before = self.frames
                try:
                    for text in self.feed(msg):
                        send(text)
                except Exception:  # noqa: BLE001 - garbage must not kill the stream
                    log.exception("%s bad module frame", label)
                relay.frames_in += self.frames - before
            if held:
                sender.flush_held()

    def feed(self, msg: bytes) -> list:
        frames = self._assembler.feed(msg)
        self.frames += len(frames)
        if self.plain:
            track = self._tracks[0]
            n = self._sent[track]
            self._sent[track] = n + len(frames)
            media = self.dialect.media
            return [media(track, frame, (n + i) * 20) for i, frame in enumerate(frames)]
        out = []
        for frame in frames:
            self._convert(frame, out)
        return out

    def _convert(self, frame: bytes, out: list) -> None:
        if self.mix == "mono":
            parts = ((self._tracks[0], frame),)
        elif self.both:
            left, right = codecs.stereo_split(frame)
            parts = (("inbound", left), ("outbound", right))
        else:
            parts = (("outbound", codecs.stereo_right(frame)),)
        for track, pcm in parts:
            if self._mulaw:
                payloads = (codecs.ulaw_encode(pcm),)
            elif track in self._resample:
                resampler, assembler = self._resample[track]
                payloads = assembler.feed(resampler.process(pcm))
            else:
                payloads = (pcm,)
            for payload in payloads:
                if self._be:
                    payload = codecs.byteswap16(payload)
                self._out(track, payload, out)

    def _out(self, track: str, payload: bytes, out: list) -> None:
        n = self._sent[track]
        self._sent[track] = n + 1
        out.append(self.dialect.media(track, payload, n * 20))
