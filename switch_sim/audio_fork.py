"""mod_audio_fork emulation: the `uuid_audio_fork` API, one fork session per media bug, and what the
module does with the server's messages. `register(sim)` installs the API on a Simulator.

Owns (from the drachtio 88e1465 and jambonz 30f2189 sources and the captures in
tests/fixtures/fs-captures): argument splitting exactly as `switch_separate_string` (spaces, single
quotes group and are removed, backslash escapes, ``^^X`` delimiter prefix, the last slot keeps the
unsplit rest; 7 slots drachtio, 10 jambonz), the metadata-vs-bugname heuristic, bug-name
uniqueness, every reply text (``+OK Success``, ``-ERR Operation Failed``, empty = mod_event_socket's
``-ERR no reply``, the flavour's ``-USAGE:`` line byte for byte), the media-bug side (mono / mixed /
stereo L=read R=write through the bug's buffers (switch_sim/media_bug.py), 8 kHz or resampled,
not taken from the buffers before the socket is open, pause/resume,
graceful-shutdown, the fixed-size send buffer and ``buffer_overrun`` once), the server messages
(playAudio -> temp file + ``play_audio``; killAudio; transcription / transfer / error / disconnect /
json events with the data re-printed compactly like cJSON_PrintUnformatted; unknown or non-JSON:
nothing) and, for jambonz with ``true true <rate>``, the bidirectional playout: binary L16 in,
odd byte carried over, prebuffered (1280*df samples first, then 640*df: the source's constants,
which the captured mark timings match), resampled to 8 kHz, mixed into
the frames the channel writes (the SMBF_WRITE_REPLACE bug, in bug order: nothing is mixed, and
nothing leaves the module's buffer, while the channel writes nothing), and marks (at most 30) echoed
when playout reaches them, ``cleared`` on killAudio (which also sets CF_BREAK on the channel).
The WebSocket client itself is `switch_sim.fork_ws.AudioPipe`.

Approximated (not in the captures):
* Resampling (fork to 16k etc., or incoming 16k audio to 8k) is linear interpolation with exact
  output sizes (the module uses the speex resampler); no anti-alias filter when downsampling.
* A mark marker is the sample value -1 (0xFFFF), as in the module; when incoming audio is resampled
  the markers are kept at their position instead of going through the resampler.
* `start` with an unparsable URL (bad scheme) is answered `+OK Success` and then fails with
  connect_failed "Unable to connect" (the module would use an uninitialised host buffer); `start`
  with a mix type but no rate (a NULL dereference in the module) gets no reply; a rate <= 0 or above
  384000 fails (-ERR Operation Failed), like the speex resampler init failure for <= 0.
* MOD_AUDIO_FORK_BUFFER_SECS and MOD_AUDIO_FORK_SUBPROTOCOL_NAME are read from the environment at
  each `start` (the module reads them once at load).
* Lock contention (`trylock` failures in the module that drop a frame) is not emulated.
* The playAudio temp-file counter is per registered simulator (the module's is per process).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import weakref
from collections import deque

import gevent
import numpy as np

from . import fork_ws
from .argsplit import atoi, separate_string
from .media_bug import BugBuffers, compose

log = logging.getLogger('switch_sim.audio_fork')

MY_BUG_NAME = 'audio_fork'
USAGE = {
    'drachtio': ('-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] '
                 '[wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] '
                 '[bugname] [metadata]\n'),
    'jambonz': ('-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown | stop_play ] '
                '[wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] '
                '[bugname] [metadata] [bidirectionalAudio_enabled] [bidirectionalAudio_stream_enabled] '
                '[bidirectionalAudio_stream_samplerate]\n'),
}
MAX_SLOTS = {'drachtio': 7, 'jambonz': 10}
OK = '+OK Success\n'
FAILED = '-ERR Operation Failed\n'
NO_REPLY = ''

CHANNEL_RATE = 8000
FRAME_SAMPLES = 160
FRAME_SIZE_8000 = 320
MIN_FREE = 320          # read_impl.decoded_bytes_per_packet of an 8 kHz L16 channel
MAX_MARKS = 30
AUDIO_MARKER = -1       # 0xFFFF as int16
MAX_RATE = 384000

EV_PREFIX = 'mod_audio_fork::'




# ---------------------------------------------------------------------------------------------
# command parsing (fork_function)
# ---------------------------------------------------------------------------------------------

class Command:
    """One parsed `uuid_audio_fork` call. `reply` is set when the answer is known without a channel
    (usage); `noreply` when the module writes nothing (after the session lookup)."""

    def __init__(self, **kw):
        self.reply = None
        self.uuid = None
        self.action = None
        self.bugname = MY_BUG_NAME
        self.text = None
        self.noreply = False
        self.url = None
        self.mix = None
        self.rate = 8000
        self.metadata = None
        self.bidi_enable = 1
        self.bidi_stream = 0
        self.bidi_rate = 0
        self.__dict__.update(kw)

    @property
    def write_replace(self) -> bool:
        return bool(self.bidi_enable and self.bidi_stream and self.bidi_rate)


def _is_json_start(s: str) -> bool:
    return bool(s) and s[0] in '{['


def parse_command(args: str, flavor: str) -> Command:
    argv = separate_string(args, max_parts=MAX_SLOTS[flavor]) if args else []
    argc = len(argv)
    if not args or argc < 2 or (argv[1] == 'start' and argc < 4):
        return Command(reply=USAGE[flavor], argv=argv)
    cmd = Command(uuid=argv[0], argv=argv)
    action = argv[1].lower()
    cmd.action = action
    if action == 'stop':
        if argc > 3:
            cmd.bugname, cmd.text = argv[2], argv[3]
        elif argc > 2:
            if _is_json_start(argv[2]):
                cmd.text = argv[2]
            else:
                cmd.bugname = argv[2]
    elif action == 'stop_play' and flavor == 'jambonz':
        pass
    elif action in ('pause', 'resume', 'graceful-shutdown'):
        if argc > 2:
            cmd.bugname = argv[2]
    elif action == 'send_text':
        if argc < 3:
            cmd.noreply = True
        elif argc > 3:
            cmd.bugname, cmd.text = argv[2], argv[3]
        elif _is_json_start(argv[2]):
            cmd.text = argv[2]
        else:
            cmd.bugname = argv[2]
    elif action == 'start':
        # the usage check compares with strcmp, the dispatch with strcasecmp: "START a" gets here
        cmd.action = 'start'
        if argc < 4:
            cmd.noreply = True  # NULL dereference in the module
            return cmd
        cmd.url = argv[2]
        if flavor == 'jambonz' and argc > 9:
            if argv[5] != '':
                cmd.bugname = argv[5]
            if argv[6] != '':
                cmd.metadata = argv[6]
            cmd.bidi_enable = 1 if argv[7] == 'true' else 0
            cmd.bidi_stream = 1 if argv[8] == 'true' else 0
            cmd.bidi_rate = atoi(argv[9])
        elif argc > 6:
            cmd.bugname, cmd.metadata = argv[5], argv[6]
        elif argc > 5:
            if _is_json_start(argv[5]):
                cmd.metadata = argv[5]
            else:
                cmd.bugname = argv[5]
        if argv[3] not in ('mono', 'mixed', 'stereo'):
            cmd.noreply = True  # invalid mix type: the module writes nothing
            return cmd
        cmd.mix = argv[3]
        if argc < 5:
            cmd.noreply = True  # the module dereferences NULL here
            return cmd
        if argv[4] == '16k':
            cmd.rate = 16000
        elif argv[4] == '8k':
            cmd.rate = 8000
        else:
            cmd.rate = atoi(argv[4])
    else:
        cmd.action = 'unsupported'
    return cmd


def parse_ws_uri(url: str, flavor: str):
    """parse_ws_uri: (host, port, path, tls) or None when the scheme is not ws/wss/http/https."""
    for prefix, tls, port in (('https://', True, 443), ('HTTPS://', True, 443), ('wss://', True, 443),
                              ('WSS://', True, 443), ('http://', False, 80), ('HTTP://', False, 80),
                              ('ws://', False, 80), ('WS://', False, 80)):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            break
    else:
        return None
    if flavor == 'drachtio':
        m = re.match(r'^(.+?):?(\d+)?(/.*)?$', rest, re.S)
    else:
        m = re.search(r'([^/:]+):?([0-9]*)?(/.*)?$', rest, re.S)
    if not m:
        return None
    host = m.group(1)
    if m.group(2):
        port = atoi(m.group(2))
    path = m.group(3) or '/'
    return host, port, path, tls


# ---------------------------------------------------------------------------------------------
# cJSON-like parse / print (objects keep key order and duplicates; lookups are case-insensitive)
# ---------------------------------------------------------------------------------------------

class JObject(list):
    """A JSON object as cJSON holds it: an ordered list of (key, value) pairs."""

    def get_item(self, key: str):
        k = key.lower()
        for name, value in self:
            if name.lower() == k:
                return value
        return None

    def detach(self, key: str):
        k = key.lower()
        for i, (name, value) in enumerate(self):
            if name.lower() == k:
                del self[i]
                return value
        return None


def _reject_constant(name):
    raise ValueError('not JSON: %s' % name)


_decoder = json.JSONDecoder(object_pairs_hook=JObject, parse_constant=_reject_constant)


def cjson_parse(text: str):
    """cJSON_Parse: leading whitespace skipped, trailing text ignored. Raises ValueError."""
    i = 0
    while i < len(text) and ord(text[i]) <= 32:
        i += 1
    value, _ = _decoder.raw_decode(text, i)
    return value


def _print_number(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        if -2 ** 31 <= v < 2 ** 31:
            return str(v)
        v = float(v)
    if v != v or v in (float('inf'), float('-inf')):
        return 'null'
    if v == int(v) and abs(v) < 1e15:
        return str(int(v)) if -2 ** 31 <= int(v) < 2 ** 31 else '%1.15g' % v
    s = '%1.15g' % v
    if float(s) != v:
        s = '%1.17g' % v
    return s


def cjson_print(value) -> str:
    """cJSON_PrintUnformatted."""
    if value is None:
        return 'null'
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, (int, float)):
        return _print_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, JObject):
        return '{' + ','.join('%s:%s' % (json.dumps(k, ensure_ascii=False), cjson_print(v)) for k, v in value) + '}'
    if isinstance(value, list):
        return '[' + ','.join(cjson_print(v) for v in value) + ']'
    return json.dumps(value)


def message_type(msg) -> str:
    """parse_json in parser.cpp: the string "type" field, else "json"."""
    if isinstance(msg, JObject):
        t = msg.get_item('type')
        if isinstance(t, str):
            return t
    return 'json'


# ---------------------------------------------------------------------------------------------
# audio helpers
# ---------------------------------------------------------------------------------------------

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


def _pcm(data: bytes) -> np.ndarray:
    if len(data) % 2:
        data = data[:-1]
    return np.frombuffer(data, dtype='<i2')


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


# ---------------------------------------------------------------------------------------------
# one fork (lws_glue private_t + the media bug)
# ---------------------------------------------------------------------------------------------

def _buffer_secs() -> int:
    return max(1, min(atoi(os.environ['MOD_AUDIO_FORK_BUFFER_SECS']) if os.environ.get(
        'MOD_AUDIO_FORK_BUFFER_SECS') is not None else 2, 5))


class ForkSession:
    """One media bug of mod_audio_fork on one channel. Owns its AudioPipe and its Playout."""

    def __init__(self, module: 'AudioForkModule', channel, cmd: Command, target):
        self.module = module
        self.channel = channel
        self.name = cmd.bugname
        self.flavor = module.flavor
        self.mix = cmd.mix
        self.rate = cmd.rate
        self.channels = 2 if cmd.mix == 'stereo' else 1
        self.metadata = cmd.metadata or ''
        self.bidi_enable = cmd.bidi_enable if self.flavor == 'jambonz' else 0
        self.bidi_stream = cmd.bidi_stream if self.flavor == 'jambonz' else 0
        self.write_replace = self.flavor == 'jambonz' and cmd.write_replace
        self.paused = False
        self.graceful = False
        self.overrun_notified = False
        self.closed = False
        self.files: list[str] = []
        self.frame_bytes = (FRAME_SIZE_8000 * self.rate // CHANNEL_RATE) * self.channels
        self.resampler = LinearResampler(CHANNEL_RATE, self.rate, self.channels) if self.rate != CHANNEL_RATE else None
        self.playout = Playout(self.send_mark, cmd.bidi_rate) if self.flavor == 'jambonz' else None
        self.buffers = BugBuffers(read=True, write=self.mix in ('mixed', 'stereo'))
        buflen = FRAME_SIZE_8000 * self.rate // 8000 * self.channels * 1000 // 20 * _buffer_secs()
        variables = getattr(channel, 'variables', {}) or {}
        username = variables.get('MOD_AUDIO_BASIC_AUTH_USERNAME')
        password = variables.get('MOD_AUDIO_BASIC_AUTH_PASSWORD') if username else None
        if target is None:
            host, port, path, tls = '', 0, '/', False
        else:
            host, port, path, tls = target
        tls_flags = None
        if tls:
            tls_flags = {
                'allow_selfsigned': _true(variables.get('MOD_AUDIO_FORK_ALLOW_SELFSIGNED')),
                'skip_hostname_check': _true(variables.get('MOD_AUDIO_FORK_SKIP_SERVER_CERT_HOSTNAME_CHECK')),
                'allow_expired': _true(variables.get('MOD_AUDIO_FORK_ALLOW_EXPIRED')),
            }
        self.pipe: fork_ws.AudioPipe | None = fork_ws.AudioPipe(
            host=host, port=port, path=path, tls_flags=tls_flags, flavor=self.flavor, buffer_bytes=buflen,
            min_free=MIN_FREE, username=username, password=password, callback=self._on_pipe_event,
            encode_audio=self._encode, name='%s/%s' % (channel.uuid, self.name))
        self.bad_target = target is None

    # --- media bug interface ----------------------------------------------------------------------
    # flags: SMBF_READ_STREAM, + SMBF_WRITE_STREAM for mixed/stereo, + SMBF_WRITE_REPLACE for
    # jambonz `true true <rate>`; the channel calls on_read / on_write / replace_write in bug order

    reads_stream = True

    @property
    def writes_stream(self) -> bool:
        return self.mix in ('mixed', 'stereo')

    def on_read(self, data: bytes) -> None:
        """SWITCH_ABC_TYPE_READ: the frame is in the bug's read buffer; fork_frame drains what
        switch_core_media_bug_read gives (always with fill: a stereo or mixed fork gets nothing
        while the channel writes nothing)."""
        self.buffers.push_read(data)
        pipe = self.pipe
        if self.paused or self.graceful or pipe is None or pipe.state != fork_ws.CONNECTED:
            return
        while True:
            got = self.buffers.read(fill=True)
            if got is None:
                break
            read, write = got
            frame = read if self.mix == 'mono' else compose(read, write, stereo=self.mix == 'stereo')
            if self.resampler is None:
                if pipe.space_available() < MIN_FREE:
                    self._overrun()
                    pipe.reset_audio()
                if pipe.space_available() >= self.frame_bytes:
                    pipe.push_audio(frame, self.frame_bytes)
            else:
                if pipe.space_available() >= self.frame_bytes:
                    pipe.push_audio(frame, self.frame_bytes)
                if pipe.space_available() < MIN_FREE:
                    self._overrun()
                    break
        pipe.request_write()

    def on_write(self, data: bytes) -> None:
        self.buffers.push_write(data)

    def replace_write(self, frame):
        """dub_speech_frame: the app's audio is added to the frame the channel writes."""
        try:
            extra = self.playout.pull(FRAME_SIZE_8000)
        except Exception:  # noqa: BLE001 - never break the media loop
            log.exception('playout failed')
            return frame
        if not extra:
            return frame
        add = np.frombuffer(extra[:FRAME_SIZE_8000], dtype='<i2').astype(np.int32)
        out = frame.astype(np.int32)
        out[:len(add)] += add
        return np.clip(out, -32768, 32767).astype(np.int16)

    def on_close(self) -> None:
        """SWITCH_ABC_TYPE_CLOSE: the channel is closing."""
        self.module.cleanup(self, text=None, channel_closing=True)

    # --- called from the pipe's greenlets ------------------------------------------------------

    def _encode(self, frames) -> bytes:
        out = np.frombuffer(b''.join(frames), dtype='<i2')
        if self.resampler is not None:
            out = self.resampler.process(out)
        return out.astype('<i2').tobytes()

    def _attached(self) -> bool:
        return not self.closed and self.module.sessions.get((self.channel.uuid, self.name)) is self

    def _fire(self, sub: str, body: str | None = None) -> None:
        try:
            self.channel.fire_event('CUSTOM', subclass=EV_PREFIX + sub, body=body)
        except Exception:  # noqa: BLE001
            log.exception('firing %s failed', sub)

    def _on_pipe_event(self, kind: str, payload) -> None:
        if not self._attached():
            return
        try:
            if kind == fork_ws.CONNECT_SUCCESS:
                if self.metadata:
                    self.pipe.buffer_for_sending(self.metadata)
                self._fire('connect')
            elif kind == fork_ws.CONNECT_FAIL:
                self.pipe = None
                self._fire('connect_failed', '{"reason":"%s"}' % payload)
            elif kind == fork_ws.CONNECTION_DROPPED:
                self.pipe = None
                self._fire('disconnect')
            elif kind == fork_ws.CONNECTION_CLOSED_GRACEFULLY:
                self.pipe = None
            elif kind == fork_ws.MESSAGE:
                self.process_message(payload)
            elif kind == fork_ws.BINARY:
                if self.flavor == 'jambonz' and self.write_replace:
                    self.playout.incoming_binary(payload)
                else:
                    log.debug('received binary frame, discarding')
        except Exception:  # noqa: BLE001 - bad input never crashes the simulator
            log.exception('%s: failed handling %s', self.name, kind)

    def send_mark(self, name: str, cleared: bool = False) -> None:
        text = '{"type": "mark", "data": {"name":"%s", "event": "%s"}}' % (name, 'cleared' if cleared else 'playout')
        if self.pipe is not None:
            self.pipe.buffer_for_sending(text)

    def process_message(self, message: str) -> None:
        """processIncomingMessage."""
        try:
            msg = cjson_parse(message)
        except (ValueError, RecursionError):
            log.debug('parse - failed parsing incoming msg as JSON: %s', message[:200])
            return
        mtype = message_type(msg)
        data = msg.get_item('data') if isinstance(msg, JObject) else None
        jambonz = self.flavor == 'jambonz'
        if mtype == 'playAudio' and (not jambonz or (self.bidi_enable and not self.bidi_stream)):
            self._play_audio(data)
        elif mtype == 'killAudio':
            self._fire('kill_audio')
            try:
                self.channel.break_playback()
            except Exception:  # noqa: BLE001
                log.exception('break_playback failed')
            if jambonz:
                self.playout.clear_requested = True
        elif jambonz and mtype == 'mark':
            name = data.get_item('name') if isinstance(data, JObject) else None
            if isinstance(name, str):
                self.playout.add_mark(name)
        elif jambonz and mtype == 'clearMarks':
            self.playout.clear_marks()
        elif mtype in ('transcription', 'transfer', 'disconnect', 'error'):
            self._fire(mtype, None if data is None else cjson_print(data))
        elif mtype == 'json':
            self._fire('json', cjson_print(msg))
        else:
            log.info('processIncomingMessage - unsupported msg type %s', mtype)

    def _play_audio(self, data) -> None:
        if data is None:
            log.error('missing data payload in playAudio request')
            return
        if not isinstance(data, JObject):
            # cJSON_DetachItemFromObject / GetObjectItem on a non-object find nothing: NULL content type
            log.error('playAudio without audioContentType (the module would crash)')
            return
        audio = data.detach('audioContent')
        valid = isinstance(audio, str)
        ctype = data.get_item('audioContentType')
        if not isinstance(ctype, str):
            log.error('playAudio without audioContentType (the module would crash)')
            return
        ext = None
        if ctype == 'raw':
            sr = data.get_item('sampleRate')
            rate = int(sr) if isinstance(sr, (int, float)) and not isinstance(sr, bool) and int(sr) else 0
            ext = {8000: '.r8', 16000: '.r16', 24000: '.r24', 32000: '.r32', 48000: '.r48',
                   64000: '.r64'}.get(rate, '.r16')
        elif ctype in ('wave', 'wav'):
            ext = '.wav'
        else:
            valid = False
        if valid:
            raw = _b64decode(audio)
            path = '%s%s%s_%d.tmp%s' % (self.channel.temp_dir, os.sep, self.channel.uuid,
                                        self.module.next_play_count(), ext)
            try:
                with open(path, 'wb') as f:
                    f.write(raw)
                self.files.append(path)
            except OSError:
                log.exception('cannot write %s', path)
            data.append(('file', path))
        self._fire('play_audio', cjson_print(data))

    def _overrun(self) -> None:
        if not self.overrun_notified:
            self.overrun_notified = True
            self._fire('buffer_overrun')
        log.error('%s: dropping packets!', self.name)


def _true(value) -> bool:
    return isinstance(value, str) and value.lower() in ('yes', 'on', 'true', 't', 'enabled', 'active', 'allow') \
        or (isinstance(value, str) and value.isdigit() and int(value) > 0)


def _b64decode(text: str) -> bytes:
    cleaned = re.sub(r'[^A-Za-z0-9+/]', '', text.split('=', 1)[0])
    cleaned = cleaned[:len(cleaned) - (len(cleaned) % 4 == 1)]
    try:
        return base64.b64decode(cleaned + '=' * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return b''


# ---------------------------------------------------------------------------------------------
# the module: API handler and the per-simulator registry of forks
# ---------------------------------------------------------------------------------------------

class AudioForkModule:
    """The loaded module of one Simulator: `api(sim, args)` is the uuid_audio_fork handler."""

    def __init__(self, sim):
        self.sim = sim
        self.sessions: dict[tuple[str, str], ForkSession] = {}
        self.pipes: weakref.WeakSet = weakref.WeakSet()   # every pipe, including orphaned ones
        self._play_count = 0

    def shutdown(self) -> None:
        """Module unload: drop every WebSocket still open, including pipes orphaned by a `stop` while
        connecting or after graceful-shutdown (FreeSWITCH keeps those open until it exits)."""
        for pipe in list(self.pipes):
            pipe.abort()

    @property
    def flavor(self) -> str:
        return 'drachtio' if getattr(self.sim, 'flavor', 'jambonz') == 'drachtio' else 'jambonz'

    def next_play_count(self) -> int:
        n = self._play_count
        self._play_count += 1
        return n

    def api(self, sim, args: str) -> str:
        try:
            return self._api(args or '')
        except Exception:  # noqa: BLE001 - bad input never crashes the simulator
            log.exception('uuid_audio_fork %r failed', args)
            return FAILED

    def _api(self, args: str) -> str:
        flavor = self.flavor
        cmd = parse_command(args, flavor)
        if cmd.reply is not None:
            return cmd.reply
        channel = self.sim.get_channel(cmd.uuid)
        if channel is None or getattr(channel, 'hungup', False):
            return FAILED
        if cmd.noreply:
            return NO_REPLY
        session = self.sessions.get((channel.uuid, cmd.bugname))
        action = cmd.action
        if action == 'stop':
            if session is None:
                return FAILED
            self.cleanup(session, text=cmd.text, channel_closing=False)
            return OK
        if action == 'stop_play' and flavor == 'jambonz':
            session = self.sessions.get((channel.uuid, MY_BUG_NAME))
            if session is None:
                return FAILED
            session.playout.stop_play()
            return OK
        if action in ('pause', 'resume'):
            if session is None:
                return FAILED
            session.paused = action == 'pause'
            return OK
        if action == 'graceful-shutdown':
            if session is None:
                return FAILED
            session.graceful = True
            if session.pipe is not None:
                session.pipe.do_graceful_shutdown()
            return OK
        if action == 'send_text':
            if session is None:
                return FAILED
            if session.pipe is not None and cmd.text is not None:
                session.pipe.buffer_for_sending(cmd.text)
            return OK
        if action == 'start':
            return self._start(channel, cmd)
        return FAILED

    def _start(self, channel, cmd: Command) -> str:
        if (channel.uuid, cmd.bugname) in self.sessions:
            log.error('mod_audio_fork: bug %s already attached!', cmd.bugname)
            return FAILED
        target = parse_ws_uri(cmd.url, self.flavor)
        if target is None:
            log.error('invalid websocket uri: %s', cmd.url)
        elif cmd.rate % 8000:
            log.error('invalid sample rate: %s', cmd.rate)
        if not getattr(channel, 'answered', False):
            try:
                ok = channel.pre_answer()
            except Exception:  # noqa: BLE001
                ok = False
            if ok is False or getattr(channel, 'hungup', False):
                log.error('mod_audio_fork: channel must have reached pre-answer status before calling start!')
                return FAILED
        if cmd.rate <= 0 or cmd.rate > MAX_RATE:
            log.error('Error initializing mod_audio_fork session.')
            return FAILED
        session = ForkSession(self, channel, cmd, target)
        try:
            channel.add_media_bug(session)
        except ValueError:  # another module's bug has that name
            return FAILED
        self.sessions[(channel.uuid, cmd.bugname)] = session
        self.pipes.add(session.pipe)
        if session.bad_target:
            # the module goes on with an uninitialised host buffer: model it as an unreachable host
            session.pipe.state = fork_ws.FAILED
            gevent.spawn(session._on_pipe_event, fork_ws.CONNECT_FAIL, 'Unable to connect')
        else:
            session.pipe.connect()
        return OK

    def cleanup(self, session: ForkSession, text: str | None, channel_closing: bool) -> None:
        """fork_session_cleanup."""
        if session.closed:
            return
        session.closed = True
        key = (session.channel.uuid, session.name)
        if self.sessions.get(key) is session:
            del self.sessions[key]
        channel = session.channel
        if not channel_closing:
            try:
                channel.remove_media_bug(session)
            except Exception:  # noqa: BLE001
                log.exception('remove_media_bug failed')
        for path in session.files:
            try:
                os.remove(path)
            except OSError:
                pass
        session.files = []
        pipe = session.pipe
        if pipe is not None:
            if text:
                pipe.buffer_for_sending(text)
            pipe.close()


def register(sim) -> AudioForkModule:
    """Load the emulated mod_audio_fork into `sim`: registers the `uuid_audio_fork` API."""
    module = AudioForkModule(sim)
    sim.register_api('uuid_audio_fork', module.api)
    return module
