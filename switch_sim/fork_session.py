"""One mod_audio_fork fork on one channel (lws_glue's private_t plus its media bug): `ForkSession`.

Owns: the media-bug side (mono / mixed / stereo L=read R=write through the bug's buffers
(switch_sim/media_bug.py), 8 kHz or resampled, not taken from the buffers before the socket is
open, pause/resume, graceful-shutdown, the fixed-size send buffer and ``buffer_overrun`` once), the
SMBF_WRITE_REPLACE bug that mixes the jambonz playout into the frames the channel writes (in bug
order: nothing is mixed, and nothing leaves the module's buffer, while the channel writes nothing),
the events of its AudioPipe (switch_sim.fork_ws: connect, connect_failed, disconnect), and the
server's messages (playAudio -> temp file + ``play_audio``; killAudio, which also sets CF_BREAK on
the channel; mark / clearMarks; transcription / transfer / error / disconnect / json events with
the data re-printed compactly like cJSON_PrintUnformatted; unknown or non-JSON: nothing).

Approximated (not in the captures):
* MOD_AUDIO_FORK_BUFFER_SECS and MOD_AUDIO_FORK_SUBPROTOCOL_NAME are read from the environment at
  each `start` (the module reads them once at load).
* Lock contention (`trylock` failures in the module that drop a frame) is not emulated.
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import re

import numpy as np

from . import fork_ws
from .argsplit import atoi
from .fork_command import Command
from .fork_json import JObject, cjson_parse, cjson_print, message_type
from .fork_playout import CHANNEL_RATE, LinearResampler, Playout
from .media_bug import BugBuffers, compose

log = logging.getLogger('switch_sim.audio_fork')

FRAME_SIZE_8000 = 320
MIN_FREE = 320          # read_impl.decoded_bytes_per_packet of an 8 kHz L16 channel
EV_PREFIX = 'mod_audio_fork::'


def _buffer_secs() -> int:
    return max(1, min(atoi(os.environ['MOD_AUDIO_FORK_BUFFER_SECS']) if os.environ.get(
        'MOD_AUDIO_FORK_BUFFER_SECS') is not None else 2, 5))


class ForkSession:
    """One media bug of mod_audio_fork on one channel. Owns its AudioPipe and its Playout."""

    def __init__(self, module, channel, cmd: Command, target):
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
