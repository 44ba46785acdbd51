"""Digit collection: switch_ivr_read (`ivr_read`: a prompt with barge-in, then digits until the
maximum, a terminator or a timeout; silence written while waiting only with
`send_silence_when_idle`) and the apps on it, play_and_get_digits and read.

Approximated: play_and_get_digits: after the last failed try `read_result` is `timeout` when
nothing was typed, otherwise `failure`; a failure extension is not transferred to (logged as not
implemented).
"""
from __future__ import annotations

import logging
import re
import time

from ..argsplit import separate_string
from ..channel_media import silence_divisor
from .playback import play_file
from .registry import AppError, app

log = logging.getLogger('switch_sim.apps')


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
