"""Session recording: record_session's media bug (RecordSessionBug), starting and stopping it
(shared with the uuid_record API) and the record_session / stop_record_session apps.

The bug reads its buffers as switch_core_media_bug_read does (switch_sim/media_bug.py), mono or
stereo (RECORD_STEREO), read or write only, at record_sample_rate, appending with RECORD_APPEND;
RECORD_START / RECORD_STOP carry the Recording-Variable-* of `{...}` recording vars.

Approximated: the file is written when recording stops (the bytes are the same; nothing is streamed).
"""
from __future__ import annotations

import logging
import os
import time

import gevent
import numpy as np

from ..argsplit import create_brackets
from ..media import RATE, to_rate
from ..media_bug import BugBuffers, compose
from ..urlenc import url_decode
from .recfile import existing_samples, prepare_path, write_wav
from .registry import AppError, app, required_args

log = logging.getLogger('switch_sim.apps')


def parse_recording_vars(text: str) -> list[tuple[str, str]]:
    """`{name=value,...}` (URL-encoded or not) -> [(name, value)], in order: switch_url_decode,
    then switch_event_create_brackets (nothing unless the text opens with `{` and the block closes)."""
    parsed = create_brackets(url_decode(text))
    return list(parsed[0].items()) if parsed else []


class RecordSessionBug:
    """record_session's media bug (SMBF_READ_STREAM | SMBF_WRITE_STREAM | SMBF_READ_PING, stereo
    with RECORD_STEREO): on each read frame it takes what switch_core_media_bug_read gives (the
    first read of a tick fills a missing side with 0xFFFF, later ones do not); it writes the WAV
    when it stops (appending with RECORD_APPEND). Its limit is wall-clock, as the bug's stop_time:
    whole seconds of the epoch clock."""

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
        # switch_ivr_record_session_event: stop_time = switch_epoch_time_now(NULL) + limit, whole
        # seconds, reached once the clock's second gets there: the recording runs limit - (the
        # fraction of the second it started in) (tests/fixtures/fs-captures/record-limit.json)
        self.stop_at = int(time.time()) + int(limit_s) if limit_s and int(limit_s) > 0 else None
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
        if self.stop_at is not None and int(time.time()) >= self.stop_at:
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
                    data = existing_samples(self.path, self.rate, channels, data)
                size = write_wav(self.path, data, self.rate, channels)
            except Exception as exc:
                log.error('[%s] record_session: cannot write %s: %s', ch.uuid, self.path, exc)
        ch.set_variable('record_file_size', str(size))
        ch.set_variable('record_samples', str(samples_8k))
        ch.set_variable('record_seconds', str(samples_8k // RATE))
        ch.set_variable('record_ms', str(samples_8k * 1000 // RATE))
        ch.set_variable('record_completion_cause', self.completion_cause)
        ch.fire_event('RECORD_STOP', self._extra() + [('Record-Completion-Cause', self.completion_cause)])


def start_record_session(ch, path: str, limit_s: float | None = None, rec_vars=()) -> bool:
    name = 'session_record:%s' % path
    if name in ch.media_bugs:
        log.info('[%s] Already recording %s', ch.uuid, path)
        return True
    appending = dict(rec_vars).get('RECORD_APPEND', ch.get_variable('RECORD_APPEND')) == 'true'
    try:
        if not (appending and os.path.exists(path)):
            prepare_path(path)
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
    parts = required_args(data, 'record_session: no path')
    path = parts[0]
    limit = None
    rec_vars = []
    for p in parts[1:]:
        if p.startswith('+') and p[1:].isdigit():
            limit = int(p[1:])
        elif p.startswith('{') or p.startswith('%7B'):
            rec_vars = parse_recording_vars(p)
    if not ch.wait_frame():      # the bug starts on the next media frame (RECORD_START ~20 ms later)
        return
    if not start_record_session(ch, path, limit, rec_vars):
        raise AppError('record_session failed for %s' % path)


@app('stop_record_session')
def app_stop_record_session(ch, data):
    stop_record_session(ch, data.strip() or 'all')
