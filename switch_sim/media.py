"""Audio sources a simulated channel can play, all as 8 kHz mono int16 numpy sample streams.

Owns: opening a playback path into a `Source` (`open_source`), the WAV loader with its cache
(`MediaLoader`, one per Simulator), `tone_stream://`, `silence_stream://`, `file_string://`, `tts://`,
the synthetic speech used for `speak`/`tts://`, and DTMF tone generation (`dtmf_sequence`).

Approximated (documented, deterministic):
* TTS: mod_flite is not available, so speech is a synthetic voiced signal: ~65 ms per character
  (letters/digits voiced, with a pitch and formant derived from the character; spaces and punctuation
  silent), amplitude ~ -12 dBFS. Engine must be `flite` and the voice one of mod_flite's
  (awb, kal, kal16, rms, slt); anything else fails to open like a missing module/voice.
* tone_stream supports `%(on,off,f1[,f2...])` segments, `L=<n>` (the script n times; libteletone
  ignores n <= 0, so `L=-1` plays it once), `;loops=<n>` (mod_tone_stream's buffer loops: -1 =
  forever) and `v=<dB>`; other teletone script features are not implemented (the open fails with
  an error).
* silence_stream produces digital silence (no comfort noise); `0` fails ("Invalid Input") as in FreeSWITCH.
* Files: anything libsndfile (soundfile) reads; multi-channel is averaged to mono; other rates are
  resampled with soxr. `path@@<samples>` seeks.
"""
from __future__ import annotations

import logging
import math
import os
import zlib

import gevent
import numpy as np

log = logging.getLogger('switch_sim.media')

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FLITE_VOICES = {'awb', 'kal', 'kal16', 'rms', 'slt'}
TTS_ENGINES = {'flite'}
TTS_MS_PER_CHAR = 65


class MediaError(Exception):
    """A path could not be opened as audio (FreeSWITCH: file open failure -> FILE NOT FOUND)."""


class Source:
    """A stream of 8 kHz int16 samples. `read(n)` always returns n samples (zero padded at the end)."""

    file_type = None  # Playback-File-Type header value, when FreeSWITCH sets one

    def __init__(self):
        self.position = 0
        self.done = False

    def _read(self, n: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, n: int) -> np.ndarray:
        if self.done:
            return np.zeros(n, dtype=np.int16)
        chunk = self._read(n)
        got = len(chunk)
        self.position += got
        if got < n:
            self.done = True
            chunk = np.concatenate([chunk, np.zeros(n - got, dtype=np.int16)])
        return chunk


class ArraySource(Source):
    def __init__(self, samples: np.ndarray, offset: int = 0, loop: bool = False):
        super().__init__()
        self.samples = samples
        self.offset = min(max(offset, 0), len(samples))
        self.loop = loop and len(samples) > 0

    def _read(self, n):
        if self.loop:
            out = np.empty(n, dtype=np.int16)
            filled = 0
            while filled < n:
                take = min(n - filled, len(self.samples) - self.offset)
                out[filled:filled + take] = self.samples[self.offset:self.offset + take]
                filled += take
                self.offset = (self.offset + take) % len(self.samples)
            return out
        chunk = self.samples[self.offset:self.offset + n]
        self.offset += len(chunk)
        return chunk


class ConcatSource(Source):
    """file_string://: the parts one after the other, one file handle for FreeSWITCH.

    As mod_dptools' file_string does, a part is opened only when the one before it has ended (the
    first at open time), so a file removed meanwhile is skipped when its turn comes; each open,
    close and failed open fires a CUSTOM filestring::open / close / fail event (header `File`: the
    part as written) through the loader's `notify`. When the part at index 0 opened, FreeSWITCH
    plays 250 ms of samples of -1 (near silence) before it. Captured:
    tests/fixtures/fs-captures/file-string.json."""

    LEAD_SAMPLES = RATE // 1000 * 250

    def __init__(self, items, open_part, notify):
        super().__init__()
        self.items = list(items)
        self.open_part = open_part     # item -> Source (raises MediaError)
        self.notify = notify           # (subclass, item) -> None
        self.index = -1
        self.part = None
        self.lead = 0
        if not self._next():
            raise MediaError('file_string: nothing playable in %s' % '!'.join(self.items))
        if self.index == 0:
            self.lead = self.LEAD_SAMPLES

    def _next(self) -> bool:
        """mod_dptools' next_file: close the current part, open the next one that opens."""
        if self.part is not None:
            self.notify('filestring::close', self.items[self.index])
            self.part = None
        while True:
            self.index += 1
            if self.index >= len(self.items):
                return False
            item = self.items[self.index]
            try:
                self.part = self.open_part(item)
            except MediaError as exc:
                log.warning('file_string: cannot open %s: %s', item, exc)
                self.notify('filestring::fail', item)
                continue
            self.notify('filestring::open', item)
            return True

    def _read(self, n):
        out = []
        need = n
        if self.lead:
            take = min(need, self.lead)
            out.append(np.full(take, -1, dtype=np.int16))
            self.lead -= take
            need -= take
        while need > 0 and self.part is not None:
            before = self.part.position
            chunk = self.part.read(need)
            got = self.part.position - before
            out.append(chunk[:got])
            need -= got
            if self.part.done:
                self._next()
        if not out:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(out)


class MediaLoader:
    """Loads and caches audio files as 8 kHz mono int16 arrays (owned by one Simulator)."""

    def __init__(self, media_dir: str | None = None, max_entries: int = 64, notify=None):
        self.media_dir = media_dir
        self.max_entries = max_entries
        # (subclass, file) -> None: fires file_string's CUSTOM filestring::* events (the Simulator's)
        self.notify = notify or (lambda subclass, item: None)
        self._cache: dict[tuple, np.ndarray] = {}

    def resolve(self, path: str, prefix: str | None = None) -> str:
        if os.path.isabs(path):
            return path
        for base in (prefix, self.media_dir):
            if base and os.path.exists(os.path.join(base, path)):
                return os.path.join(base, path)
        return os.path.join(prefix or self.media_dir or '.', path)

    def load(self, path: str) -> np.ndarray:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise MediaError('file not found: %s' % path) from exc
        key = (path, st.st_mtime_ns, st.st_size)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        samples = load_audio(path)
        if len(self._cache) >= self.max_entries:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = samples
        return samples


def load_audio(path: str, rate: int = RATE) -> np.ndarray:
    """Read any soundfile-readable file as mono int16 at `rate`."""
    import soundfile
    try:
        data, file_rate = soundfile.read(path, dtype='float32', always_2d=True)
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError for bad files
        raise MediaError('cannot read audio file %s: %s' % (path, exc)) from exc
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if file_rate != rate and len(mono):
        import soxr
        mono = soxr.resample(mono, file_rate, rate)
    return np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16)


def to_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample 8 kHz int16 samples to `rate` (int16)."""
    if rate == RATE or not len(samples):
        return samples
    import soxr
    out = soxr.resample(samples.astype(np.float32) / 32768.0, RATE, rate)
    return np.clip(np.round(out * 32767.0), -32768, 32767).astype(np.int16)


# ---------------------------------------------------------------- synthetic signals

def tone(freqs, ms: int, amplitude: float = 8000.0) -> np.ndarray:
    n = int(RATE * ms / 1000)
    if n <= 0:
        return np.zeros(0, dtype=np.int16)
    t = np.arange(n) / RATE
    sig = np.zeros(n)
    for f in freqs:
        sig += np.sin(2 * math.pi * f * t)
    if freqs:
        sig *= amplitude / len(freqs)
    return sig.astype(np.int16)


def silence(ms: int) -> np.ndarray:
    return np.zeros(max(0, int(RATE * ms / 1000)), dtype=np.int16)


DTMF_FREQS = {
    '1': (697, 1209), '2': (697, 1336), '3': (697, 1477), 'A': (697, 1633),
    '4': (770, 1209), '5': (770, 1336), '6': (770, 1477), 'B': (770, 1633),
    '7': (852, 1209), '8': (852, 1336), '9': (852, 1477), 'C': (852, 1633),
    '*': (941, 1209), '0': (941, 1336), '#': (941, 1477), 'D': (941, 1633),
}


def dtmf_tone(digit: str, ms: int) -> np.ndarray:
    freqs = DTMF_FREQS.get(digit.upper())
    if not freqs:
        return silence(ms)
    return tone(freqs, ms, amplitude=12000.0)


def dtmf_sequence(digits: str, ms: int):
    """What `send_dtmf` / `uuid_send_dtmf` play for `digits`: each digit's tone for `ms` then 50 ms
    of silence, `w` a 500 ms and `W` a 1 s pause, `+` nothing. None when there is nothing to play."""
    pieces = []
    for c in digits:
        if c in 'wW':
            pieces.append(silence(500 if c == 'w' else 1000))
        elif c != '+':
            pieces += [dtmf_tone(c, ms), silence(50)]
    return np.concatenate(pieces) if pieces else None


def synth_speech(text: str) -> np.ndarray:
    """Deterministic speech-like audio: TTS_MS_PER_CHAR ms per character of `text`."""
    n_char = int(RATE * TTS_MS_PER_CHAR / 1000)
    t = np.arange(n_char) / RATE
    env = np.sin(np.pi * np.arange(n_char) / n_char) ** 0.5
    pieces = []
    for i, ch in enumerate(text):
        if i and i % 64 == 0:
            gevent.sleep(0)          # long texts: let other greenlets run
        if not ch.isalnum():
            pieces.append(np.zeros(n_char, dtype=np.int16))
            continue
        h = zlib.crc32(ch.lower().encode('utf-8'))
        f0 = 100 + (h % 60)                  # pitch 100..160 Hz
        formant = 500 + (h >> 8) % 1800      # a crude formant 500..2300 Hz
        sig = np.zeros(n_char)
        for k in range(1, int(3400 // f0)):
            fk = f0 * k
            weight = 1.0 / (1.0 + ((fk - formant) / 300.0) ** 2) + 0.15 / k
            sig += weight * np.sin(2 * math.pi * fk * t)
        peak = np.max(np.abs(sig)) or 1.0
        pieces.append((sig / peak * 8000 * env).astype(np.int16))
    if not pieces:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(pieces)


def parse_tts(spec: str, default_engine: str | None = None, default_voice: str | None = None):
    """`engine|voice|text` (one or two fields fall back to defaults). Returns (engine, voice, text)."""
    parts = spec.split('|', 2)
    if len(parts) == 3:
        engine, voice, text = parts
    elif len(parts) == 2:
        engine, voice, text = default_engine, parts[0], parts[1]
    else:
        engine, voice, text = default_engine, default_voice, parts[0]
    return engine, voice, text


def tts_source(engine, voice, text) -> Source:
    if not engine or engine not in TTS_ENGINES:
        raise MediaError('invalid TTS module %r' % engine)
    if not voice or voice not in FLITE_VOICES:
        raise MediaError('invalid flite voice %r' % voice)
    return ArraySource(synth_speech(text))


def _tone_stream(spec: str) -> Source:
    loops = 1
    volume_db = 0.0
    segments = []
    for part in spec.split(';'):
        part = part.strip()
        if not part:
            continue
        if part.startswith('L='):
            if int(part[2:]) > 0:              # libteletone: `if ((L = atoi(cur + 2)) > 0)`
                loops = int(part[2:])
        elif part.startswith('loops='):        # mod_tone_stream: switch_buffer_set_loops
            loops = -1 if int(part[6:]) < 0 else max(1, int(part[6:]))
        elif part.startswith('v='):
            volume_db = float(part[2:])
        elif part.startswith('%(') and part.endswith(')'):
            fields = [f.strip() for f in part[2:-1].split(',')]
            if len(fields) < 2:
                raise MediaError('bad tone_stream segment %r' % part)
            on_ms, off_ms = int(fields[0]), int(fields[1])
            freqs = [float(f) for f in fields[2:] if f]
            segments.append(np.concatenate([tone(freqs, on_ms, 8000.0 * 10 ** (volume_db / 20.0)),
                                            silence(off_ms)]))
        else:
            raise MediaError('tone_stream feature not implemented by the simulator: %r' % part)
    if not segments:
        raise MediaError('empty tone_stream')
    one = np.concatenate(segments)
    if loops < 0:
        src = ArraySource(one, loop=True)
    else:
        src = ArraySource(np.tile(one, max(1, loops)))
    src.file_type = 'tone_stream'
    return src


def _silence_stream(spec: str) -> Source:
    ms_text = spec.split(',', 1)[0].strip()
    try:
        ms = int(ms_text)
    except ValueError as exc:
        raise MediaError('Invalid Input') from exc
    if ms == 0 or ms < -1:
        raise MediaError('Invalid Input')
    if ms == -1:
        return ArraySource(np.zeros(FRAME_SAMPLES, dtype=np.int16), loop=True)
    return ArraySource(silence(ms))


def open_source(path: str, loader: MediaLoader, variables: dict | None = None) -> Source:
    """Open a FreeSWITCH playback path. Raises MediaError when FreeSWITCH's open would fail."""
    variables = variables or {}
    path = path.strip()
    # {k=v} file-handle params prefix
    if path.startswith('{') and '}' in path:
        path = path[path.index('}') + 1:]
    if not path:
        raise MediaError('empty path')
    if path.startswith('tone_stream://'):
        return _tone_stream(path[len('tone_stream://'):])
    if path.startswith('silence_stream://'):
        return _silence_stream(path[len('silence_stream://'):])
    if path.startswith('file_string://'):
        items = [item for item in path[len('file_string://'):].split('!') if item]
        return ConcatSource(items, lambda item: open_source(item, loader, variables), loader.notify)
    if path.startswith('tts://'):
        engine, voice, text = parse_tts(path[len('tts://'):], variables.get('tts_engine'),
                                        variables.get('tts_voice'))
        return tts_source(engine, voice, text)
    if path.startswith('say:'):
        return tts_source(variables.get('tts_engine'), variables.get('tts_voice'), path[4:])
    if '://' in path:
        raise MediaError('file format not supported by the simulator: %s' % path)
    offset = 0
    if '@@' in path:
        path, _, seek = path.rpartition('@@')
        try:
            offset = int(seek)
        except ValueError:
            offset = 0
    real = loader.resolve(path, variables.get('sound_prefix'))
    return ArraySource(loader.load(real), offset=offset)
