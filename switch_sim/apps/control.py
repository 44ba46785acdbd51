"""The dialplan apps that neither play nor record (mod_dptools): the answer states (answer,
pre_answer, ring_ready), channel variables (set, export, unset, multiset), log, and call control
(hangup, park, sched_hangup).
"""
from __future__ import annotations

import logging
import time

import gevent

from ..argsplit import separate_string
from .registry import AppError, app, required_args

log = logging.getLogger('switch_sim.apps')


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
    parts = required_args(data, 'sched_hangup: missing time')
    when = parts[0]
    try:
        secs = float(when[1:]) if when.startswith('+') else float(when) - time.time()
    except ValueError:
        raise AppError('sched_hangup: bad time %r' % when)
    cause = parts[1] if len(parts) > 1 else 'ALLOTTED_TIMEOUT'
    gevent.spawn_later(max(0.0, secs), ch.hangup, cause)
