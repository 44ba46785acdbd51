"""mod_audio_fork's bidirectional playout (jambonz, ``start ... true true <rate>``): binary L16 from
the server, odd byte carried over, prebuffered (1280*df samples first, then 640*df: the source's
constants, which the captured mark timings match), resampled to 8 kHz, handed out 20 ms at a time
to be mixed into the frames the channel writes; marks (at most 30) echoed when playout reaches
them, ``cleared`` on killAudio. Also the `LinearResampler` the fork's outgoing audio uses.

Approximated (not in the captures):
* Resampling (fork to 16k etc., or incoming 16k audio to 8k) is linear interpolation with exact
  output sizes (the module uses the speex resampler); no anti-alias filter when downsampling.
* A mark marker is the sample value -1 (0xFFFF), as in the module; when incoming audio is resampled
  the markers are kept at their position instead of going through the resampler.
"""
from __future__ import annotations

import logging
from collections import deque

import numpy as np

log = logging.getLogger('switch_sim.audio_fork')

CHANNEL_RATE = 8000
MAX_MARKS = 30
AUDIO_MARKER = -1       # 0xFFFF as int16


class LinearResampler:
    """Stateful resampler with exact output sizes (n * out / in per call, carried fractions)."""

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1):
        self.in_rate, self.out_rate, self.channels = in_rate, out_rate, channels
        self.prev = np.zeros(channels, dtype=np.float64)
        self.t_num = in_rate  # position of the next output sample, in units of 1/out_rate input samples

    def process(self, x: np.ndarray) -> np.ndarray:
        x = x.reshape(-1, self.channels).astype(np.float64)
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, self.channels), dtype=np.int16)
        buf = np.vstack([self.prev[None, :], x])
        limit = n * self.out_rate
        if self.t_num > limit:
            k = 0
        else:
            k = (limit - self.t_num) // self.in_rate + 1
        ts = self.t_num + self.in_rate * np.arange(k, dtype=np.int64)
        idx = ts // self.out_rate
        frac = ((ts % self.out_rate) / self.out_rate)[:, None]
        idx1 = np.minimum(idx + 1, n)
        y = buf[idx] * (1.0 - frac) + buf[idx1] * frac
        self.t_num = int(self.t_num + self.in_rate * k - limit)
        self.prev = buf[n].copy()
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


class Playout:
    """The jambonz bidirectional playout (processIncomingBinary + dub_speech_frame + marks).
    Owned by one ForkSession; mutated only in non-yielding sections (reader greenlet, media tick)."""

    def __init__(self, send_mark, bidi_rate: int):
        self.send_mark = send_mark  # send_mark(name, cleared=False)
        self.df = bidi_rate // CHANNEL_RATE if bidi_rate > CHANNEL_RATE else 1
        self.prebuf_threshold = 320 * self.df * 4
        self.prebuf = np.zeros(0, dtype=np.int16)
        self.buffer = np.zeros(0, dtype=np.int16)
        self.resampler = LinearResampler(bidi_rate, CHANNEL_RATE) if bidi_rate and bidi_rate != CHANNEL_RATE else None
        self.marks_ready = False
        self.inventory: deque[str] = deque()
        self.in_use: deque[str] = deque()
        self.cleared: deque[str] = deque()
        self.set_aside: bytes | None = None
        self.clear_requested = False

    def mark_count_exceeded(self) -> bool:
        return self.marks_ready and len(self.in_use) + len(self.inventory) >= MAX_MARKS

    def add_mark(self, name: str) -> None:
        if self.mark_count_exceeded():
            log.info('mark count exceeded, discarding mark %s', name)
            return
        self.marks_ready = True
        self.inventory.append(name)

    def clear_marks(self) -> None:
        if self.marks_ready:
            self.cleared.extend(self.in_use)
            self.cleared.extend(self.inventory)
            self.inventory.clear()
            self.in_use.clear()

    def stop_play(self) -> None:
        self.buffer = np.zeros(0, dtype=np.int16)

    def incoming_binary(self, data: bytes) -> None:
        if self.set_aside is not None:
            data = self.set_aside + data
            self.set_aside = None
        if len(data) % 2:
            self.set_aside = data[-1:]
            data = data[:-1]
        samples = np.frombuffer(data, dtype='<i2').astype(np.int16)
        n_markers = len(self.inventory)
        if self.marks_ready:
            self.in_use.extend(self.inventory)
            self.inventory.clear()
        parts = [self.prebuf]
        if n_markers:
            parts.append(np.full(n_markers, AUDIO_MARKER, dtype=np.int16))
        parts.append(samples)
        self.prebuf = np.concatenate(parts)
        if len(self.prebuf) < self.prebuf_threshold:
            return
        self.prebuf_threshold = 320 * self.df * 2
        complete = (len(self.prebuf) // self.df) * self.df
        chunk, leftover = self.prebuf[:complete], self.prebuf[complete:]
        out = self._resample(chunk) if self.resampler else chunk
        self.buffer = np.concatenate([self.buffer, out])
        self.prebuf = leftover.copy()

    def _resample(self, chunk: np.ndarray) -> np.ndarray:
        pieces = []
        marker_at = np.flatnonzero(chunk == AUDIO_MARKER)
        pos = 0
        for m in marker_at:
            if m > pos:
                pieces.append(self.resampler.process(chunk[pos:m]).reshape(-1))
            pieces.append(np.array([AUDIO_MARKER], dtype=np.int16))
            pos = m + 1
        if pos < len(chunk):
            pieces.append(self.resampler.process(chunk[pos:]).reshape(-1))
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)

    def pull(self, nbytes: int = 320):
        """dub_speech_frame: the samples to add to this tick's write frame (bytes) or None."""
        n = nbytes // 2
        if self.clear_requested:
            self.buffer = np.zeros(0, dtype=np.int16)
            self.clear_requested = False
            if self.marks_ready and (self.inventory or self.in_use):
                for name in list(self.in_use) + list(self.inventory):
                    self.send_mark(name, cleared=True)
                self.cleared.extend(self.in_use)
                self.in_use.clear()
                self.inventory.clear()
            return None
        k = min(len(self.buffer), n)
        seg, self.buffer = self.buffer[:k], self.buffer[k:]
        has_markers = self.marks_ready and (len(self.in_use) + len(self.cleared) > 0)
        if has_markers:
            marks = np.flatnonzero(seg == AUDIO_MARKER)
            for _ in marks:
                vec = self.cleared if self.cleared else self.in_use
                if vec:
                    name = vec.popleft()
                    if vec is self.in_use:
                        self.send_mark(name)
            valid = seg[seg != AUDIO_MARKER]
            if len(valid) == 0:
                return None
            out = np.zeros(n, dtype=np.int16)
            out[:len(valid)] = valid
            return out.astype('<i2').tobytes()
        if k > 0:
            out = np.zeros(n, dtype=np.int16)
            out[:k] = seg
            return out.astype('<i2').tobytes()
        if self.marks_ready and self.inventory:
            self.send_mark(self.inventory.popleft())
        return None
