"""The dialplan apps that read the caller's audio themselves, frame by frame, through a read tap of
the channel (not a media bug): record (switch_ivr_record_file) and wait_for_silence
(switch_ivr_wait_for_silence).

record writes low noise to the caller while it records (record_waste_resources, on by default) and
keeps a CNG read frame (the caller sent nothing) only with `record_fill_cng`.

record's time limit is wall-clock, whole seconds of the epoch clock, as FreeSWITCH's: `record <path>
2` records between 2 and 3 seconds (the stop comes at the second boundary three seconds after the
second it started in).

Approximated: record's energy measure is the mean absolute sample value of each 20 ms frame of the
caller's audio, compared with the threshold (FreeSWITCH's record loop does the same per frame); no
`record_restart_limit_on_dtmf`, append (of `record`) or `RECORD_MIN_SEC` handling.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..argsplit import atoi, separate_string
from ..media import RATE, MediaError, open_source, to_rate
from ..media_bug import sln_silence
from .recfile import prepare_path, write_wav
from .registry import AppError, app, next_frame, playback_terminators, required_args

log = logging.getLogger('switch_sim.apps')


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
            score = int(_energy(last))
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


def _record_divisor(value, default: int) -> int:
    """record_waste_resources / record_fill_cng: "true" = 1400, a number (< 0 = 0), unset = default."""
    if value is None:
        return default
    if str(value).lower() == 'true':
        return 1400
    return max(0, atoi(value))


@app('record')
def app_record(ch, data):
    parts = required_args(data, 'record: no path')
    path = parts[0]

    def num(i, default):
        try:
            return int(parts[i].lstrip('+'))
        except (IndexError, ValueError):
            return default
    limit_s = num(1, 0)
    thresh = num(2, 0)
    silence_hits_s = num(3, 3 if thresh else 0)
    terminators = playback_terminators(ch)
    ch.set_variable('playback_terminator_used', None)
    ch.set_variable('silence_hits_exhausted', None)
    try:
        prepare_path(path)
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
    # switch_ivr_record_file: start = switch_epoch_time_now(NULL), and the loop breaks once
    # switch_epoch_time_now(NULL) - start > limit, both whole seconds: the recording runs to the
    # wall-clock second boundary limit + 1 seconds after the second it started in, between limit and
    # limit + 1 seconds (tests/fixtures/fs-captures/record-limit.json)
    started_s = int(time.time()) if limit_s > 0 else None
    try:
        while True:
            if not next_frame(ch):
                break
            if started_s is not None and int(time.time()) - started_s > limit_s:
                break
            if ch.has_dtmf():
                d = ch.dequeue_dtmf()
                if d and d in terminators:
                    ch.set_variable('playback_terminator_used', d)
                    break
            frames, collector.frames = collector.frames, []
            for frame in frames:
                if frame is not None:
                    recorded.append(frame)
                elif fill_cng:
                    recorded.append(sln_silence(160, fill_cng).tobytes())
            if thresh and hits and frames:
                last = frames[-1]
                silent_frames = silent_frames + 1 if _energy(last) < thresh else 0
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


def _energy(frame) -> float:
    """The mean absolute sample of a read frame (bytes); 1 for a CNG frame (None)."""
    if frame is None:
        return 1.0
    return float(np.mean(np.abs(np.frombuffer(frame, dtype='<i2').astype(np.int32))))
