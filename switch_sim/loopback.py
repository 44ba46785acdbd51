"""mod_loopback as a B-leg of `bridge`: `loopback/<dest>[/<context>[/<dialplan>]]` is a pair of
channels, as in FreeSWITCH (tests/fixtures/fs-captures/bridge.json, bridge.md).

Owns `new_pair`: the -a leg (`loopback/<dest>-a`, outbound) is the B-leg of the bridge (a
bleg.OriginatedChannel); the -b leg (`loopback/<dest>-b`, inbound, the same caller profile and
the same variables, as mod_loopback copies the originate's variables to both) runs the dialplan:
with the `inline` dialplan the apps of <dest> (`app:arg` separated by `,`, or by X after a leading
`m:X:`), else the extension: `EXTENSIONS` (the test switch's 9999 and 9998) or `sim.route(dest)`
(the outbound socket, e.g. to callfork). What the -b leg signals reaches the -a leg (ring_ready,
pre_answer, answer), a hangup of either reaches the other with the same cause (mod_loopback's
channel_on_hangup), and media flows through the pair (what one writes the other reads, CNG when
it wrote nothing in time). other_loopback_leg_uuid and loopback_leg (A / B) are set on each.
`send_dtmf_to_far_end(ch, digits)`: DTMF sent out of a loopback leg (send_dtmf, uuid_send_dtmf, a
bridge passing digits on) arrives at its partner as received DTMF (mod_loopback's send_dtmf), `w`
and `W` waiting 500 ms and 1 s.

Owns `originate_pair` too: the pair `originate loopback/...` makes (apis/calls.py), as captured in
tests/fixtures/fs-captures/originate-loopback.json. Its -a leg (`OriginateA`, outbound, the
originate's uuid, `loopback/<dest>-a`) fires CHANNEL_OUTGOING, CHANNEL_CREATE and CHANNEL_ORIGINATE,
then waits for its -b leg: ringing there is CHANNEL_PROGRESS here (call state RINGING), early media
or an answer there settles the originate (`settled`) and, once the originate answered +OK
(`decided`), the -a leg runs its app or extension; a hangup of the -b leg before the originate's
next look at it (busy, its dialplan ending) is the originate's failure cause,
and the originate's timeout or a uuid_kill of the -a leg reaches the -b leg with the same cause.
The -b leg runs `far_end_apps`: the inline apps, the test switch's EXTENSIONS (9999, 9998), the
socket to callfork for `callfork<N>` / `stream<N>` (that dialplan's numbers), and any other number
answers and parks (on the test switch's vanilla dialplan such a number fails with NORMAL_CLEARING:
the simulator answers it so that REST calls to any number reach callfork).

Approximated: the `app=` destination form, bowout and the loopback_* knobs are not modelled;
`respond` on a loopback leg does nothing (as on FreeSWITCH, where the inline dialplan then ends and
the pair hangs up with NORMAL_CLEARING).
"""
from __future__ import annotations

import logging
import re

import gevent
from gevent.event import Event as GEvent

from .argsplit import separate_string
from .bleg import FrameLink, LinkedFar, OriginatedChannel
from .channel import Channel

log = logging.getLogger('switch_sim.loopback')

# the extensions of the freeswitch-test configuration (/work/shared/freeswitch-test/README.md):
# 9999 answers and parks, 9998 answers and plays an endless 440 Hz tone
EXTENSIONS = {
    '9999': [('answer', ''), ('park', '')],
    '9998': [('answer', ''), ('playback', 'tone_stream://%(1000,0,440);loops=-1')],
}


def inline_apps(target: str) -> list[tuple[str, str]]:
    """mod_dptools' inline dialplan: `app[:arg]` items split on ',' (switch_separate_string), or on
    X after a leading `m:X:`."""
    delim = ','
    if len(target) > 3 and target.startswith('m:') and target[3] == ':':
        delim, target = target[2], target[4:]
    apps = []
    for item in separate_string(target, delim=delim, max_parts=128):
        app, sep, arg = item.partition(':')
        apps.append((app.lstrip(' '), arg if sep else ''))
    return apps


class LoopbackA(OriginatedChannel):
    """The -a leg of a pair: the B-leg of the bridge."""

    partner = None

    def hangup(self, cause: str = 'NORMAL_CLEARING') -> None:
        if self.hungup:
            return
        super().hangup(cause)
        if self.partner is not None:
            self.partner.hangup(self.hangup_cause)


class LoopbackB(Channel):
    """The -b leg of a pair: runs the dialplan; its answer states reach the -a leg."""

    partner = None

    def ring_ready(self) -> None:
        super().ring_ready()
        self.partner.ring_ready()

    def pre_answer(self) -> None:
        super().pre_answer()
        self.partner.pre_answer()

    def answer(self, callstate_now: bool = True) -> None:
        was = self.answered
        super().answer(callstate_now)
        if self.answered and not was:
            self.partner.answer()

    def hangup(self, cause: str = 'NORMAL_CLEARING') -> None:
        if self.hungup:
            return
        super().hangup(cause)
        self.partner.hangup(self.hangup_cause)


def new_pair(sim, a_leg, data: str, kwargs: dict) -> LoopbackA:
    """Both legs of `loopback/<data>`, started; returns the -a leg. While inbound calls are paused
    (`fsctl pause inbound`) the -b leg cannot be created: the -a leg alone, which never rings nor
    answers (mod_loopback leaves it in CS_INIT), until the bridge's timeout ends it
    (tests/fixtures/fs-captures/pause-inbound.json)."""
    dest, _, rest = data.partition('/')
    if sim.paused_inbound:
        leg_a = OriginatedChannel(sim, a_leg, name='loopback/%s-a' % dest, destination=dest, **kwargs)
        leg_a.start()
        return leg_a
    context, _, dialplan = rest.partition('/')
    context = context or 'default'
    a_to_b, b_to_a = FrameLink(), FrameLink()
    leg_a = LoopbackA(sim, a_leg, name='loopback/%s-a' % dest, destination=dest,
                      caller=LinkedFar(b_to_a, a_to_b), **kwargs)
    leg_a.context = context
    leg_a.source = 'mod_loopback'
    if dialplan == 'inline':
        apps = inline_apps(dest)
    else:
        apps = list(EXTENSIONS.get(dest) or sim.route(dest))
    profile = {'orig_caller_name': leg_a.caller_name, 'orig_caller_number': leg_a.caller_number,
               'ani': leg_a.caller_number, 'callee_name': leg_a.callee_name,
               'callee_number': leg_a.callee_number, 'source': 'mod_loopback',
               'dialplan_name': dialplan or 'XML'}
    leg_b = LoopbackB(sim, direction='inbound', caller_number=leg_a.caller_number,
                      caller_name=leg_a.caller_name, destination=dest, variables=None,
                      caller=LinkedFar(a_to_b, b_to_a), name='loopback/%s-b' % dest, dialplan=apps,
                      context=context, profile=profile)
    for key, value in kwargs['variables'].items():
        if key != 'origination_uuid':
            leg_b.set_variable(key, value)
    leg_a.partner, leg_b.partner = leg_b, leg_a
    leg_a.set_variable('other_loopback_leg_uuid', leg_b.uuid)
    leg_a.set_variable('loopback_leg', 'A')
    leg_b.set_variable('other_loopback_leg_uuid', leg_a.uuid)
    leg_b.set_variable('loopback_leg', 'B')
    leg_a.start()
    leg_a.ready.wait(5)
    leg_b.start()
    return leg_a


# the numbers the test switch's dialplan sends to the outbound socket (callfork)
SOCKET_NUMBERS = re.compile(r'(stream\d*|callfork\d*)')
ANSWER_AND_PARK = [('answer', ''), ('park', '')]


def far_end_apps(sim, dest: str, dialplan: str) -> list[tuple[str, str]]:
    """What the -b leg of an originated pair runs (see the module docstring)."""
    if dialplan == 'inline':
        return inline_apps(dest)
    if dest in EXTENSIONS:
        return list(EXTENSIONS[dest])
    if SOCKET_NUMBERS.fullmatch(dest):
        return list(sim.route(dest))
    return list(ANSWER_AND_PARK)


class OriginateA(Channel):
    """The -a leg of a pair `originate` dials: the originated channel (see the module docstring).
    `settled` is set once its far side gave early media, answered or hung up, `decided` once the
    originate answered (its app runs then)."""

    partner = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.settled = GEvent()
        self.decided = GEvent()   # set by the originate once it answered +OK or -ERR

    def ring_ready(self) -> None:
        was = self.progress_us
        super().ring_ready()
        if self.progress_us and not was:
            self._set_call_state('RINGING')

    def pre_answer(self) -> None:
        super().pre_answer()
        if self.early_media:
            self.settled.set()

    def answer(self, callstate_now: bool = True) -> None:
        super().answer(callstate_now)
        if self.answered:
            self.settled.set()

    def hangup(self, cause: str = 'NORMAL_CLEARING') -> None:
        if self.hungup:
            return
        super().hangup(cause)
        self.settled.set()
        if self.partner is not None:
            self.partner.hangup(self.hangup_cause)

    def _session_main(self) -> None:
        try:
            for name in ('CHANNEL_OUTGOING', 'CHANNEL_CREATE', 'CHANNEL_ORIGINATE'):
                self.fire_event(name)
            self.decided.wait()
            if not self.hungup:
                self._run_dialplan()       # given its app or extension: an outbound channel flips
        except Exception:
            log.exception('[%s] originated loopback leg failed', self.uuid)
        finally:
            self._end_session()


def originate_pair(sim, *, uuid: str, data: str, variables: dict, dialplan: list, profile: dict,
                   far=None) -> OriginateA:
    """Both legs of `originate loopback/<data>`, started; returns the -a leg, whose `settled` says
    when its far side settled; the caller sets its `decided` when the originate answered. `profile`:
    the -a leg's caller profile (apis/calls.py originate_profile); `dialplan`: what it runs then; `far`: its far end instead of the -b
    leg's media (the simulator's own sim_audio)."""
    dest, _, rest = data.partition('/')
    context, _, dialplan_name = rest.partition('/')
    a_to_b, b_to_a = FrameLink(), FrameLink()
    leg_a = OriginateA(sim, uuid=uuid, direction='outbound', variables=variables, dialplan=dialplan,
                       caller=far or LinkedFar(b_to_a, a_to_b), **profile)
    b_profile = {'orig_caller_name': leg_a.caller_name, 'orig_caller_number': leg_a.caller_number,
                 'ani': leg_a.caller_number, 'callee_name': leg_a.callee_name,
                 'callee_number': leg_a.callee_number, 'source': 'mod_loopback',
                 'dialplan_name': dialplan_name or 'XML'}
    leg_b = LoopbackB(sim, direction='inbound', caller_number=leg_a.caller_number,
                      caller_name=leg_a.caller_name, destination=dest, variables=None,
                      caller=LinkedFar(a_to_b, b_to_a), name='loopback/%s-b' % dest,
                      dialplan=far_end_apps(sim, dest, dialplan_name), context=context or 'default',
                      profile=b_profile)
    for key, value in variables.items():
        if key != 'origination_uuid':
            leg_b.set_variable(key, value)
    leg_a.partner, leg_b.partner = leg_b, leg_a
    for leg, other, name in ((leg_a, leg_b, 'A'), (leg_b, leg_a, 'B')):
        leg.set_variable('other_loopback_leg_uuid', other.uuid)
        leg.set_variable('loopback_leg', name)
    leg_a.start()
    leg_b.start()
    return leg_a


def send_dtmf_to_far_end(ch, digits: str) -> bool:
    """Queue `digits` on the partner of loopback leg `ch` (in the background); False if `ch` is not
    a loopback leg."""
    partner = getattr(ch, 'partner', None)
    if partner is None:
        return False

    def deliver():
        for digit in digits:
            if digit in 'wW':
                gevent.sleep(0.5 if digit == 'w' else 1.0)
            elif digit.upper() in '0123456789*#ABCD':
                partner.queue_dtmf(digit.upper())
    gevent.spawn(deliver)
    return True
