"""Dialplan applications of the simulated switch (the ones a Vobiz/SWML engine uses).

Each app is `func(channel, data)` running in the channel's session greenlet; it paces itself on the
channel's 20 ms media clock (`channel.wait_frame()`), so DTMF, uuid_break (CF_BREAK) and hangup are
seen within one frame, as in FreeSWITCH's play/record loops; on each frame the media loops also
service queued messages (`channel.service_messages()`: nested execution unless event-locked). Results go into channel variables and
`current_application_response` (the Application-Response of CHANNEL_EXECUTE_COMPLETE). What an app
writes while it runs (switch_sim/channel.py "Media"): playback/speak their audio; sleep and digit
collection silence only with `send_silence_when_idle`; record low noise (record_waste_resources);
the others nothing. record keeps a CNG read frame only with `record_fill_cng`; record_session reads
its media bug's buffers as switch_core_media_bug_read does (switch_sim/media_bug.py) and appends
with RECORD_APPEND.

Apps: answer, pre_answer, ring_ready, playback, endless_playback, speak, sleep, wait_for_silence,
record_session, stop_record_session, record, play_and_get_digits, read, send_dtmf, set, export, unset, multiset,
hangup, park, sched_hangup, log. (`socket` is registered by switch_sim.outbound.)

Approximated:
* speak / tts:// use the synthetic speech of switch_sim.media (mod_flite is not available).
* play_and_get_digits: after the last failed try `read_result` is `timeout` when nothing was typed,
  otherwise `failure`; a failure extension is not transferred to (logged as not implemented).
* record: the energy measure is the mean absolute sample value of each 20 ms frame of the caller's
  audio, compared with the threshold (FreeSWITCH's record loop does the same per frame); no
  `record_restart_limit_on_dtmf`, append (of `record`) or `RECORD_MIN_SEC` handling.
* record_session writes the file when recording stops (the bytes are the same; nothing is streamed).
"""
from __future__ import annotations

import logging
import os
import re
import time

import gevent
import numpy as np

from .argsplit import atoi, separate_string
from .channel import silence_divisor
from .media import (RATE, ArraySource, MediaError, dtmf_tone, open_source, parse_tts,
                    silence, to_rate, tts_source)
from .media_bug import BugBuffers, compose, sln_silence

log = logging.getLogger('switch_sim.apps')

APPS: dict = {}
ALL_DIGITS = '1234567890*#'


class AppError(Exception):
    """An app could not do its job (logged once with the call uuid by Channel.execute)."""


def app(name):
    def register(func):
        APPS[name] = func
        return func
    return register


def _terminators(ch, default='*') -> str:
    value = ch.get_variable('playback_terminators', default)
    if value == 'any':
        return ALL_DIGITS
    if value == 'none':
        return ''
    return value or ''


# --------------------------------------------------------------------------- answer states
@app('answer')
def app_answer(ch, data):
    if ch.answered:
        return
    ch.answer(callstate_now=False)
    ch.wait_frame()
    if not ch.hungup:
        ch._set_call_state('ACTIVE')


@app('pre_answer')
def app_pre_answer(ch, data):
    ch.pre_answer()


@app('ring_ready')
def app_ring_ready(ch, data):
    ch.ring_ready()


# --------------------------------------------------------------------------- playing
def play_source(ch, src, terminators: str = '', barge_in: bool = False):
    """Play `src` on the write stream until done, break, terminator, or hangup.

    Returns (status, digit): status 'done' | 'break' | 'hangup'; digit = the terminator used or, with
    barge_in, the first digit pressed. Non-terminator digits are dequeued and discarded."""
    previous = ch.write_source
    ch.write_source = src
    status, digit = 'done', None
    try:
        while True:
            if not ch.wait_frame():
                status = 'hangup'
                break
            ch.service_messages()               # non-locked queued messages run nested here
            if ch.hungup:
                status = 'hangup'
                break
            ch.write_source = src
            if ch.take_break():
                status = 'break'
                break
            if ch.has_dtmf():
                d = ch.dequeue_dtmf()
                if barge_in or (d and d in terminators):
                    status, digit = 'break', d
                    break
            if src.done:
                break
    finally:
        if ch.write_source is src:
            ch.write_source = previous if not ch.hungup else None
    return status, digit


def play_file(ch, path: str, terminators: str = '', barge_in: bool = False):
    """switch_ivr_play_file: PLAYBACK_START/STOP + playback_* vars. Returns (status, digit);
    status 'notfound' when the path cannot be opened (no events then). A playback ended by hangup
    reports `Playback-Status: done`, as the capture of a uuid_kill during playback shows."""
    try:
        src = open_source(path, ch.sim.media, ch.variables)
    except MediaError as exc:
        log.error('[%s] cannot play %s: %s', ch.uuid, path, exc)
        return 'notfound', None
    ch.pre_answer()
    if ch.hungup:
        return 'hangup', None
    typed = [('Playback-File-Type', src.file_type)] if src.file_type else []
    ch.fire_event('PLAYBACK_START', typed + [('Playback-File-Path', path)])
    status, digit = play_source(ch, src, terminators, barge_in)
    samples = src.position
    ch.set_variable('playback_last_offset_pos', str(samples))
    ch.set_variable('playback_seconds', str(samples // RATE))
    ch.set_variable('playback_ms', str(samples * 1000 // RATE))
    ch.set_variable('playback_samples', str(samples))
    ch.fire_event('PLAYBACK_STOP', typed + [('Playback-File-Path', path),
                                            ('Playback-Status', 'break' if status == 'break' else 'done')])
    return status, digit


@app('playback')
def app_playback(ch, data):
    terminators = _terminators(ch)
    ch.set_variable('playback_terminator_used', None)
    delim = ch.get_variable('playback_delimiter')
    files = [f for f in data.split(delim)] if delim else [data]
    result = 'FILE PLAYED'
    for path in files:
        status, digit = play_file(ch, path, terminators)
        if status == 'notfound':
            result = 'FILE NOT FOUND'
            break
        if digit:
            ch.set_variable('playback_terminator_used', digit)
        if status != 'done':
            break
    ch.set_variable('current_application_response', result)


@app('endless_playback')
def app_endless_playback(ch, data):
    # a break (uuid_break, killAudio) stops the current pass; the loop starts it again, as captured
    # (PLAYBACK_STOP then PLAYBACK_START after killAudio); only hangup or an unplayable file end it
    while not ch.hungup:
        status, _ = play_file(ch, data)
        if status not in ('done', 'break'):
            break


@app('speak')
def app_speak(ch, data):
    engine, voice, text = parse_tts(data, ch.get_variable('tts_engine'), ch.get_variable('tts_voice'))
    if not engine or not voice:
        log.error('[%s] speak: Invalid Params', ch.uuid)
        ch.hangup('DESTINATION_OUT_OF_ORDER')
        return
    try:
        src = tts_source(engine, voice, text)
    except MediaError as exc:
        raise AppError(str(exc)) from exc
    ch.pre_answer()
    ch.set_variable('playback_terminator_used', None)
    status, digit = play_source(ch, src, _terminators(ch))
    if digit:
        ch.set_variable('playback_terminator_used', digit)


@app('sleep')
def app_sleep(ch, data):
    try:
        ms = int(data.strip() or 0)
    except ValueError:
        raise AppError('sleep: bad duration %r' % data)
    eat = ch.get_variable('sleep_eat_digits') == 'true'
    terminators = _terminators(ch)
    frames = max(0, ms // 20)
    if ch.answered or ch.early_media:      # switch_ivr_sleep reads it on every call
        ch.silence_writer = silence_divisor(ch.get_variable('send_silence_when_idle'))
    for _ in range(frames):
        if not ch.wait_frame():
            return
        ch.service_messages()
        if ch.hungup or ch.take_break():
            return
        if ch.has_dtmf():
            if not eat:
                return          # the digit stays queued for the next reader
            d = ch.dequeue_dtmf()
            if d and d in terminators:
                return


@app('wait_for_silence')
def app_wait_for_silence(ch, data):
    """`wait_for_silence <thresh> <silence_hits> <listen_hits> [<timeout_ms> [<file>]]`
    (switch_ivr_wait_for_silence): per 20 ms read frame the score is the mean absolute sample; a
    frame with score >= thresh counts as heard; once more than `listen_hits` frames were heard, a run
    of `silence_hits` frames below thresh starts a 25-frame countdown, then the app returns. A line
    that is silent from the start never qualifies (only the timeout ends it). DTMF does not end it
    (digits stay queued); a break does not either (the loop only checks channel readiness).
    With fewer than 3 arguments or a zero threshold/silence_hits: the usage error, nothing waited."""
    parts = separate_string(data)
    try:
        thresh, silence_hits, listen_hits = int(parts[0]), int(parts[1]), int(parts[2])
        timeout_ms = int(parts[3]) if len(parts) > 3 else 0
    except (IndexError, ValueError):
        raise AppError('Usage: <silence_thresh> <silence_hits> <listen_hits> <timeout_ms> [<file>]')
    if thresh <= 0 or silence_hits <= 0:
        raise AppError('Usage: <silence_thresh> <silence_hits> <listen_hits> <timeout_ms> [<file>]')
    src = None
    if len(parts) > 4 and parts[4]:
        try:
            src = open_source(parts[4], ch.sim.media, ch.variables)
        except MediaError as exc:
            log.error('[%s] wait_for_silence: cannot open %s: %s', ch.uuid, parts[4], exc)
            return
        ch.write_source = src
    collector = _ReadCollector(ch)
    samples_left = 8 * timeout_ms
    org_hits, listening, countdown = silence_hits, 0, 0
    try:
        while ch.wait_frame():
            if timeout_ms:
                samples_left -= 160
                if samples_left <= 0:
                    break
            if src is not None and src.done:
                break
            if countdown:
                countdown -= 1
                if not countdown:
                    break
                continue
            if not collector.frames:
                continue
            last = collector.frames[-1]
            collector.frames.clear()
            score = 1 if last is None else int(np.mean(np.abs(np.frombuffer(last, dtype='<i2').astype(np.int32))))
            if score >= thresh:
                listening += 1
            if listening > listen_hits and score < thresh:
                silence_hits -= 1
                if not silence_hits:
                    countdown = 25
            else:
                silence_hits = org_hits
    finally:
        collector.close()
        if src is not None and ch.write_source is src:
            ch.write_source = None


@app('send_dtmf')
def app_send_dtmf(ch, data):
    digits, _, dur = data.strip().partition('@')
    try:
        duration_ms = int(dur) if dur else 250
    except ValueError:
        duration_ms = 250
    pieces = []
    for c in digits:
        if c == 'w':
            pieces.append(silence(500))
        elif c == 'W':
            pieces.append(silence(1000))
        elif c == '+':
            continue
        else:
            pieces.append(dtmf_tone(c, duration_ms))
            pieces.append(silence(50))
    if pieces:
        play_source(ch, ArraySource(np.concatenate(pieces)))


# --------------------------------------------------------------------------- variables
def _split_assignment(text: str):
    if '=' in text:
        name, _, value = text.partition('=')
    else:
        name, _, value = text.partition(',')
    return name.strip(), value


@app('set')
def app_set(ch, data):
    name, value = _split_assignment(data)
    if not name:
        raise AppError('set: no variable name')
    ch.set_variable(name, value)


@app('export')
def app_export(ch, data):
    name, value = _split_assignment(data)
    local = True
    if name.startswith('nolocal:'):
        name, local = name[len('nolocal:'):], False
    if not name:
        raise AppError('export: no variable name')
    if local:
        ch.set_variable(name, value)
    exported = [v for v in (ch.get_variable('export_vars') or '').split(',') if v]
    if name not in exported:
        exported.append(name)
    ch.set_variable('export_vars', ','.join(exported))


@app('unset')
def app_unset(ch, data):
    ch.set_variable(data.strip(), None)


@app('multiset')
def app_multiset(ch, data):
    for item in separate_string(data):
        name, value = _split_assignment(item)
        if name:
            ch.set_variable(name, value)


@app('log')
def app_log(ch, data):
    log.info('[%s] log: %s', ch.uuid, data)


# --------------------------------------------------------------------------- call control
@app('hangup')
def app_hangup(ch, data):
    ch.hangup(data.strip() or 'NORMAL_CLEARING')


@app('park')
def app_park(ch, data):
    ch.park()


@app('sched_hangup')
def app_sched_hangup(ch, data):
    parts = separate_string(data)
    if not parts:
        raise AppError('sched_hangup: missing time')
    when = parts[0]
    try:
        secs = float(when[1:]) if when.startswith('+') else float(when) - time.time()
    except ValueError:
        raise AppError('sched_hangup: bad time %r' % when)
    cause = parts[1] if len(parts) > 1 else 'ALLOTTED_TIMEOUT'
    gevent.spawn_later(max(0.0, secs), ch.hangup, cause)


# --------------------------------------------------------------------------- recording
def write_wav(path: str, samples: np.ndarray, rate: int, channels: int) -> int:
    """Write 16-bit PCM WAV (44-byte header); returns the file size."""
    import soundfile
    data = samples.reshape(-1, channels) if channels > 1 else samples
    soundfile.write(path, data, rate, subtype='PCM_16', format='WAV')
    return os.path.getsize(path)


def _record_divisor(value, default: int) -> int:
    """record_waste_resources / record_fill_cng: "true" = 1400, a number (< 0 = 0), unset = default."""
    if value is None:
        return default
    if str(value).lower() == 'true':
        return 1400
    return max(0, atoi(value))


def _prepare_path(path: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, 'wb'):
        pass


def _parse_recording_vars(text: str) -> list[tuple[str, str]]:
    from .urlenc import url_decode
    text = url_decode(text.strip())
    if text.startswith('{') and text.endswith('}'):
        text = text[1:-1]
    out = []
    for item in text.split(','):
        if '=' in item:
            k, _, v = item.partition('=')
            out.append((k.strip(), v))
    return out


class RecordSessionBug:
    """record_session's media bug (SMBF_READ_STREAM | SMBF_WRITE_STREAM | SMBF_READ_PING, stereo
    with RECORD_STEREO): on each read frame it takes what switch_core_media_bug_read gives (the
    first read of a tick fills a missing side with 0xFFFF, later ones do not); it writes the WAV
    when it stops (appending with RECORD_APPEND). Its limit is wall-clock, as the bug's stop_time."""

    function = 'session_record'
    read_ping = True

    def __init__(self, ch, path: str, limit_s: float | None = None, rec_vars=()):
        self.ch = ch
        self.path = path
        self.target = path
        self.name = 'session_record:%s' % path
        self.rec_vars = list(rec_vars)
        var = self._var
        self.stereo = var('RECORD_STEREO') == 'true'
        self.swap = var('RECORD_STEREO_SWAP') == 'true'
        self.read_only = var('RECORD_READ_ONLY') == 'true'
        self.write_only = var('RECORD_WRITE_ONLY') == 'true'
        self.append = var('RECORD_APPEND') == 'true'
        self.reads_stream = not self.write_only
        self.writes_stream = not self.read_only
        self.buffers = BugBuffers(read=self.reads_stream, write=self.writes_stream)
        self.stop_at = (ch._frames + int(limit_s * 50)) if limit_s else None
        try:
            self.rate = int(var('record_sample_rate') or RATE)
        except ValueError:
            self.rate = RATE
        if self.rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000):
            self.rate = RATE
        self.frames: list[bytes] = []
        self.completion_cause = 'success-silence'   # what FreeSWITCH reports when closed by hangup
        self.closed = False

    def _var(self, name):
        for k, v in self.rec_vars:
            if k == name:
                return v
        return self.ch.get_variable(name)

    def _extra(self):
        return [('Record-File-Path', self.path)] + [('Recording-Variable-%s' % k, v) for k, v in self.rec_vars]

    def on_init(self):
        self.ch.fire_event('RECORD_START', self._extra())

    def on_read(self, data: bytes):
        self.buffers.push_read(data)

    def on_write(self, data: bytes):
        self.buffers.push_write(data)

    def on_read_ping(self):
        if self.closed:
            return
        first = True
        while True:
            got = self.buffers.read(fill=not first)
            first = False
            if got is None:
                break
            read, write = got
            self.frames.append(compose(read, write, self.stereo, self.swap))
        if self.stop_at is not None and self.ch._frames >= self.stop_at:
            self.stop_at = None
            self.completion_cause = 'success-maxtime'
            gevent.spawn(self.ch.remove_media_bug, self)

    def on_close(self):
        if self.closed:
            return
        self.closed = True
        channels = 2 if self.stereo else 1
        data = np.frombuffer(b''.join(self.frames), dtype=np.int16)
        samples_8k = len(data) // channels
        if self.rate != RATE and len(data):
            if channels == 2:
                cols = [to_rate(np.ascontiguousarray(data[i::2]), self.rate) for i in range(2)]
                data = np.stack(cols, axis=1).reshape(-1)
            else:
                data = to_rate(data, self.rate)
        ch = self.ch
        size = 0
        if not self.frames and not self.append:
            # switch_ivr_async.c: nothing written and not appending: the file is removed
            ch.set_variable('RECORD_DISCARDED', 'true')
            self.completion_cause = 'empty-file'
            try:
                os.remove(self.path)
            except OSError:
                pass
        else:
            try:
                if self.append:
                    data = _existing_samples(self.path, self.rate, channels, data)
                size = write_wav(self.path, data, self.rate, channels)
            except Exception as exc:
                log.error('[%s] record_session: cannot write %s: %s', ch.uuid, self.path, exc)
        ch.set_variable('record_file_size', str(size))
        ch.set_variable('record_samples', str(samples_8k))
        ch.set_variable('record_seconds', str(samples_8k // RATE))
        ch.set_variable('record_ms', str(samples_8k * 1000 // RATE))
        ch.set_variable('record_completion_cause', self.completion_cause)
        ch.fire_event('RECORD_STOP', self._extra() + [('Record-Completion-Cause', self.completion_cause)])


def _existing_samples(path: str, rate: int, channels: int, new: np.ndarray) -> np.ndarray:
    """RECORD_APPEND: what the file already holds (same rate and channels), then `new`."""
    import soundfile
    try:
        old, old_rate = soundfile.read(path, dtype='int16', always_2d=True)
    except Exception:
        return new
    if old_rate != rate or old.shape[1] != channels:
        log.error('append to %s: it is %d Hz x %d, not %d Hz x %d', path, old_rate, old.shape[1], rate, channels)
        return new
    return np.concatenate([old.reshape(-1), new])


def start_record_session(ch, path: str, limit_s: float | None = None, rec_vars=()) -> bool:
    name = 'session_record:%s' % path
    if name in ch.media_bugs:
        log.info('[%s] Already recording %s', ch.uuid, path)
        return True
    appending = dict(rec_vars).get('RECORD_APPEND', ch.get_variable('RECORD_APPEND')) == 'true'
    try:
        if not (appending and os.path.exists(path)):
            _prepare_path(path)
    except OSError as exc:
        log.error('[%s] record_session: cannot open %s: %s', ch.uuid, path, exc)
        return False
    ch.pre_answer()
    ch.add_media_bug(RecordSessionBug(ch, path, limit_s, rec_vars))
    return True


def stop_record_session(ch, path: str) -> bool:
    found = False
    for bug in list(ch.media_bugs.values()):
        if isinstance(bug, RecordSessionBug) and (path == 'all' or bug.path == path):
            bug.completion_cause = 'success-maxtime'
            ch.remove_media_bug(bug)
            found = True
    return found


@app('record_session')
def app_record_session(ch, data):
    parts = separate_string(data)
    if not parts:
        raise AppError('record_session: no path')
    path = parts[0]
    limit = None
    rec_vars = []
    for p in parts[1:]:
        if p.startswith('+') and p[1:].isdigit():
            limit = int(p[1:])
        elif p.startswith('{') or p.startswith('%7B'):
            rec_vars = _parse_recording_vars(p)
    if not ch.wait_frame():      # the bug starts on the next media frame (RECORD_START ~20 ms later)
        return
    if not start_record_session(ch, path, limit, rec_vars):
        raise AppError('record_session failed for %s' % path)


@app('stop_record_session')
def app_stop_record_session(ch, data):
    stop_record_session(ch, data.strip() or 'all')


@app('record')
def app_record(ch, data):
    parts = separate_string(data)
    if not parts:
        raise AppError('record: no path')
    path = parts[0]

    def num(i, default):
        try:
            return int(parts[i].lstrip('+'))
        except (IndexError, ValueError):
            return default
    limit_s = num(1, 0)
    thresh = num(2, 0)
    silence_hits_s = num(3, 3 if thresh else 0)
    terminators = _terminators(ch)
    ch.set_variable('playback_terminator_used', None)
    ch.set_variable('silence_hits_exhausted', None)
    try:
        _prepare_path(path)
    except OSError as exc:
        log.error('[%s] record: cannot open %s: %s', ch.uuid, path, exc)
        ch.hangup('DESTINATION_OUT_OF_ORDER')
        return
    ch.pre_answer()
    ch.fire_event('RECORD_START', [('Record-File-Path', path)], location='RECORD_START/record')
    # switch_ivr_record_file writes low noise to the caller while recording (record_waste_resources,
    # on unless set false), and writes a CNG read frame to the file only with record_fill_cng
    ch.silence_writer = _record_divisor(ch.get_variable('record_waste_resources'), default=1400)
    fill_cng = _record_divisor(ch.get_variable('record_fill_cng'), default=0)
    collector = _ReadCollector(ch)
    recorded: list[bytes] = []
    silent_frames = 0
    hits = silence_hits_s * 50
    exhausted = False
    started = ch._frames
    try:
        while True:
            if not ch.wait_frame():
                break
            ch.service_messages()
            if ch.hungup or ch.take_break():
                break
            if ch.has_dtmf():
                d = ch.dequeue_dtmf()
                if d and d in terminators:
                    ch.set_variable('playback_terminator_used', d)
                    break
            if limit_s and ch._frames - started >= limit_s * 50:
                break
            frames, collector.frames = collector.frames, []
            for frame in frames:
                if frame is not None:
                    recorded.append(frame)
                elif fill_cng:
                    recorded.append(sln_silence(160, fill_cng).tobytes())
            if thresh and hits and frames:
                last = frames[-1]
                energy = 1.0 if last is None else float(
                    np.mean(np.abs(np.frombuffer(last, dtype='<i2').astype(np.int32))))
                silent_frames = silent_frames + 1 if energy < thresh else 0
                if silent_frames >= hits:
                    exhausted = True
                    break
    finally:
        collector.close()
    data_arr = np.frombuffer(b''.join(recorded), dtype=np.int16)
    rate = RATE
    try:
        rate = int(ch.get_variable('record_rate') or RATE)
    except ValueError:
        rate = RATE
    out = to_rate(data_arr, rate) if rate != RATE else data_arr
    try:
        size = write_wav(path, out, rate, 1)
    except Exception as exc:
        log.error('[%s] record: cannot write %s: %s', ch.uuid, path, exc)
        size = 0
    n = len(data_arr)
    ch.set_variable('record_seconds', str(n // RATE))
    ch.set_variable('record_ms', str(n * 1000 // RATE))
    ch.set_variable('record_samples', str(n))
    ch.set_variable('record_file_size', str(size))
    if exhausted:
        ch.set_variable('silence_hits_exhausted', 'true')
    ch.fire_event('RECORD_STOP', [('Record-File-Path', path)], location='RECORD_STOP/record')


class _ReadCollector:
    """The read frames an app reads itself (`record`, `wait_for_silence`): bytes, or None for a
    CNG frame (the caller sent nothing). A read tap of the channel, not a media bug."""

    def __init__(self, ch):
        self.ch = ch
        self.frames: list = []
        ch.read_taps.append(self._tap)

    def _tap(self, frame) -> None:
        self.frames.append(None if frame is None else frame.tobytes())

    def close(self) -> None:
        if self._tap in self.ch.read_taps:
            self.ch.read_taps.remove(self._tap)


# --------------------------------------------------------------------------- digit collection
def ivr_read(ch, min_digits, max_digits, prompt, var_name, timeout_ms, terminators, digit_timeout_ms):
    """switch_ivr_read. Returns (status, digits); status 'success' | 'timeout' | 'failure'."""
    ch.set_variable('read_result', None)
    if var_name:
        ch.set_variable(var_name, None)
    ch.set_variable('read_terminator_used', None)
    digits = ''
    terminator = None
    if prompt:
        status, d = play_file(ch, prompt, barge_in=True)
        if d:
            if d in terminators:
                terminator = d
            else:
                digits = d
    status = 'timeout'
    if ch.hungup:
        status = 'failure'
    elif terminator or len(digits) >= max_digits:
        status = 'success'
    else:
        last = time.monotonic()
        # switch_ivr_collect_digits_*: silence is written while waiting only with send_silence_when_idle
        ch.silence_writer = silence_divisor(ch.get_variable('send_silence_when_idle'))
        while True:
            if not ch.wait_frame():
                status = 'failure'
                break
            ch.service_messages()
            d = ch.dequeue_dtmf() if ch.has_dtmf() else None
            if d:
                last = time.monotonic()
                if d in terminators:
                    terminator = d
                    status = 'success'
                    break
                digits += d
                if len(digits) >= max_digits:
                    status = 'success'
                    break
            limit = (digit_timeout_ms if digits else timeout_ms) / 1000.0
            if time.monotonic() - last >= limit:
                status = 'timeout'
                break
        ch.silence_writer = None
    if terminator:
        ch.set_variable('read_terminator_used', terminator)
    if len(digits) < min_digits and status != 'failure' and not (status == 'timeout' and not digits):
        status = 'failure'          # SWITCH_STATUS_TOO_SMALL
    ch.set_variable('read_result', status)
    if var_name:
        ch.set_variable(var_name, digits)
    return status, digits


@app('play_and_get_digits')
def app_play_and_get_digits(ch, data):
    p = separate_string(data)
    if len(p) < 9:
        raise AppError('play_and_get_digits: expected at least 9 arguments, got %d' % len(p))
    try:
        min_d, max_d, tries, timeout = int(p[0]), int(p[1]), int(p[2]), int(p[3])
        digit_timeout = int(p[9]) if len(p) > 9 and p[9].lstrip('-').isdigit() else timeout
    except ValueError as exc:
        raise AppError('play_and_get_digits: bad numbers: %s' % exc)
    terminators, prompt, invalid, var_name, regex = p[4], p[5], p[6], p[7], p[8]
    failure_ext = p[10] if len(p) > 10 else None
    min_d = max(0, min_d)
    max_d = max(max_d, min_d, 1)
    timeout = max(timeout, 1000)
    if digit_timeout <= 0:
        digit_timeout = timeout
    if not terminators:
        terminators = '#'
    if terminators == 'none':
        terminators = ''
    try:
        pattern = re.compile(regex) if regex else None
    except re.error:
        pattern = None
    last_status, last_digits = 'timeout', ''
    for _ in range(max(1, tries)):
        if ch.hungup:
            break
        status, digits = ivr_read(ch, min_d, max_d, prompt, var_name, timeout, terminators, digit_timeout)
        last_status, last_digits = status, digits
        if min_d == 0 and not digits and ch.get_variable('read_terminator_used'):
            return
        if digits and (status == 'success' or (status == 'timeout' and len(digits) >= min_d)):
            if pattern is None or pattern.search(digits):
                return
            ch.set_variable(var_name, None)
            ch.set_variable(var_name + '_invalid', digits)
        if ch.hungup:
            break
        if invalid:
            play_file(ch, invalid)
    ch.set_variable(var_name, None)
    ch.set_variable('read_result', 'timeout' if (last_status == 'timeout' and not last_digits) else 'failure')
    if failure_ext:
        log.error('[%s] play_and_get_digits: transfer to failure extension %s is not implemented',
                  ch.uuid, failure_ext)


@app('read')
def app_read(ch, data):
    p = separate_string(data)
    if len(p) < 6:
        raise AppError('read: expected at least 6 arguments')
    try:
        min_d, max_d, timeout = int(p[0]), int(p[1]), int(p[4])
        digit_timeout = int(p[6]) if len(p) > 6 else timeout
    except ValueError as exc:
        raise AppError('read: bad numbers: %s' % exc)
    min_d = max(1, min_d)
    max_d = max(max_d, min_d)
    ivr_read(ch, min_d, max_d, p[2], p[3], timeout, p[5] if p[5] != 'none' else '', digit_timeout)
