"""The dialplan apps that write audio to the caller and wait on the media clock: playback,
endless_playback, speak, send_dtmf and sleep, with `play_source`/`play_file` (switch_ivr_play_file:
PLAYBACK_START/STOP and the playback_* variables), which the other apps play their prompts with.

Each loops on the channel's 20 ms clock (`channel.wait_frame()`), so DTMF, uuid_break (CF_BREAK)
and hangup are seen within one frame, and services queued messages on every frame
(`channel.service_messages()`: nested execution unless event-locked). sleep writes silence only
with `send_silence_when_idle`.

Approximated: speak / tts:// use the synthetic speech of switch_sim.media (mod_flite is not
available). send_dtmf plays the tones in band; on a loopback leg the partner receives the digits
instead (switch_sim.loopback.send_dtmf_to_far_end, as mod_loopback's send_dtmf).
"""
from __future__ import annotations

import logging

from ..channel_media import silence_divisor
from ..media import RATE, ArraySource, MediaError, dtmf_sequence, open_source, parse_tts, tts_source
from .registry import AppError, app, next_frame, playback_terminators

log = logging.getLogger('switch_sim.apps')


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
    terminators = playback_terminators(ch)
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
    status, digit = play_source(ch, src, playback_terminators(ch))
    if digit:
        ch.set_variable('playback_terminator_used', digit)


@app('sleep')
def app_sleep(ch, data):
    try:
        ms = int(data.strip() or 0)
    except ValueError:
        raise AppError('sleep: bad duration %r' % data)
    eat = ch.get_variable('sleep_eat_digits') == 'true'
    terminators = playback_terminators(ch)
    frames = max(0, ms // 20)
    if ch.answered or ch.early_media:      # switch_ivr_sleep reads it on every call
        ch.silence_writer = silence_divisor(ch.get_variable('send_silence_when_idle'))
    for _ in range(frames):
        if not next_frame(ch):
            return
        if ch.has_dtmf():
            if not eat:
                return          # the digit stays queued for the next reader
            d = ch.dequeue_dtmf()
            if d and d in terminators:
                return


@app('send_dtmf')
def app_send_dtmf(ch, data):
    digits, _, dur = data.strip().partition('@')
    try:
        duration_ms = int(dur) if dur else 250
    except ValueError:
        duration_ms = 250
    from ..loopback import send_dtmf_to_far_end
    if send_dtmf_to_far_end(ch, digits):      # a loopback leg: its partner receives the digits
        return
    samples = dtmf_sequence(digits, duration_ms)
    if samples is not None:
        play_source(ch, ArraySource(samples))
