"""Scripted callees: who answers a `bridge` B-leg to a SIP or user endpoint on the simulator
(`sofia/gateway/<gw>/<number>`, `sofia/<profile>/sip:<uri>`, `user/<name>`), set up with the API
`sim_callee <json>` (`+OK <id>`), so tests can dial out without a real far end.

The JSON: `match` (required: a number or URI; a leg matches when its endpoint ends with it, or its
number, switch_sanitize_number of the endpoint, equals it), `answer_after` (seconds after the call
arrives; null or absent: never answers), `early_media` (pre-answer at once: 183 with media),
`ring` (ring_ready at once, default true), `reject` (a hangup cause, e.g. USER_BUSY or CALL_REJECTED,
given after `reject_after` seconds, default 0), `audio` (a file the callee speaks once media is up,
then silence), `hangup_after` (seconds after the answer: the callee hangs up with NORMAL_CLEARING),
`save_heard` (a WAV path for what the callee heard), `keep_heard` (keep it in memory:
`heard(sim, id)` -> int16 samples of the last call). A later `sim_callee` with the same `match`
replaces the earlier one; `sim_callee {"match": X, "remove": true}` removes it.

A leg that matches no callee: see switch_sim.bleg.new_leg (what FreeSWITCH gives an unknown
gateway, an unknown user, an unreachable SIP address).
"""
from __future__ import annotations

import dataclasses
import json
import logging

import gevent

from .apis.calls import sanitize_number
from .caller import CallerModel, CallScript
from .causes import HANGUP_CAUSES

log = logging.getLogger('switch_sim.callees')


@dataclasses.dataclass
class Callee:
    id: str
    match: str
    answer_after: float | None = None
    early_media: bool = False
    ring: bool = True
    reject: str | None = None
    reject_after: float = 0.0
    audio: str | None = None
    hangup_after: float | None = None
    save_heard: str | None = None
    keep_heard: bool = False
    calls: list = dataclasses.field(default_factory=list)     # [(channel, CallerModel)]


def _registry(sim) -> dict:
    reg = getattr(sim, 'callees', None)
    if reg is None:
        reg = sim.callees = {}
    return reg


def api_sim_callee(sim, args):
    try:
        spec = json.loads(args)
        if not isinstance(spec, dict) or not str(spec.get('match') or ''):
            raise ValueError('"match" is required')
        match = str(spec['match'])
        reg = _registry(sim)
        if spec.get('remove'):
            reg.pop(match, None)
            return '+OK removed\n'
        reject = spec.get('reject')
        if reject is not None and str(reject).upper() not in HANGUP_CAUSES:
            raise ValueError('unknown hangup cause %r' % reject)
        answer_after = spec.get('answer_after')
        hangup_after = spec.get('hangup_after')
        callee = Callee(id='callee-%d' % (len(reg) + 1), match=match,
                        answer_after=None if answer_after is None else float(answer_after),
                        early_media=bool(spec.get('early_media')), ring=bool(spec.get('ring', True)),
                        reject=None if reject is None else str(reject).upper(),
                        reject_after=float(spec.get('reject_after') or 0), audio=spec.get('audio'),
                        hangup_after=None if hangup_after is None else float(hangup_after),
                        save_heard=spec.get('save_heard'), keep_heard=bool(spec.get('keep_heard')))
        if callee.audio:
            sim.media.load(callee.audio)           # fails now (MediaError) rather than on the call
        reg[match] = callee
    except Exception as exc:
        return '-ERR %s\n' % str(exc).replace('\n', ' ')
    return '+OK %s\n' % callee.id


def find(sim, endpoint: str):
    """The callee a leg's endpoint reaches, or None."""
    number = sanitize_number(endpoint.split('/', 1)[1] if '/' in endpoint else endpoint)
    for callee in _registry(sim).values():
        if endpoint.endswith(callee.match) or number == callee.match:
            return callee
    return None


def callee_far_end(callee: Callee) -> CallerModel:
    script = CallScript(to='', audio=callee.audio, save_heard=callee.save_heard,
                        keep_heard=callee.keep_heard or callee.save_heard is not None)
    return CallerModel.from_script(script)


def start_callee(sim, callee: Callee, ch):
    """Start the B-leg `ch` and play the callee's part on it."""
    callee.calls.append((ch, ch.caller))
    ch.start()
    gevent.spawn(_behave, callee, ch)
    return ch


def _behave(callee: Callee, ch) -> None:
    if not ch.ready.wait(5) or ch.hungup:
        return
    if callee.ring:
        ch.ring_ready()
    if callee.early_media:
        ch.pre_answer()
    if callee.reject:
        gevent.sleep(callee.reject_after)
        ch.hangup(callee.reject)
        return
    if callee.answer_after is None:
        return
    gevent.sleep(callee.answer_after)
    if ch.hungup:
        return
    ch.answer()
    if callee.hangup_after is not None:
        gevent.sleep(callee.hangup_after)
        ch.hangup('NORMAL_CLEARING')


def heard(sim, callee_id: str):
    """What the callee `callee_id` heard on its last call (int16 samples), or None."""
    for callee in _registry(sim).values():
        if callee.id == callee_id and callee.calls:
            return callee.calls[-1][1].heard_samples()
    return None
