"""The `bridge` app (mod_dptools' audio_bridge_function over switch_ivr_originate and
switch_ivr_multi_threaded_bridge), as captured on FreeSWITCH 1.10.12
(tests/fixtures/fs-captures/bridge.json; what was seen: bridge.md there).

Originate: the dial string (switch_sim.dialstring) is tried group by group (`|` failover); the legs
of a group ring in parallel (switch_sim.bleg.new_leg). The first leg that answers wins, or the
first with early media unless `ignore_early_media` is true (FreeSWITCH's early_ok: with
ignore_early_media=false, the default, a callee's 183 ends the originate and the bridge runs on
early media); the others are hung up with LOSE_RACE. A leg's `leg_timeout` hangs it up with
ALLOTTED_TIMEOUT; the call's timeout (the A-leg's `call_timeout`, else `originate_timeout`,
else 60 s) hangs up what still rings with NO_ANSWER; the A-leg hanging up cancels the legs with
ORIGINATOR_CANCEL. With `group_confirm_key`, an answered leg wins only once it has pressed the key
(switch_ivr_originate's collect thread: group_confirm_file, _read_timeout, _error_file, _timeout;
not captured, read in the source). While the legs ring, the A-leg hears `ringback` (a tone `%(on,off,f..)` or a
file), once a leg rings or at once with `instant_ringback`; without it, nothing is written, except
with `bridge_early_media=true`: the originate then waits for an answer and, for a single leg and no
ringback, the leg's early media is what the A-leg hears (pre-answered; switch_ivr_originate's
ignore_early_media == 3 passthrough, read in the source and checked at callfork's level by
tests/test_scenario_dial.py on FreeSWITCH 1.10.12). A leg
that fails sets the A-leg's last_bridge_hangup_cause (while the A-leg is up).

Failure: originate_disposition / originate_failed_cause = the cause (the last leg's), DIALSTATUS
(BUSY, NOANSWER, CANCEL, DONTCALL, INVALIDARGS or the cause), originated_legs / originate_causes
(`uuid;Outbound Call;<callee number>` / `uuid;<cause>` per channel created, a list when several),
then switch_channel_handle_cause: the A-leg goes on when continue_on_fail is true (or lists the
cause), or the cause is NO_ANSWER, NO_USER_RESPONSE or ORIGINATOR_CANCEL and continue_on_fail is
unset; otherwise it is hung up with the cause.

Bridge: CHANNEL_BRIDGE on the A-leg only (Bridge-A/B-Unique-ID first, `Other-Type: originatee` and
the B-leg's profile as Other-Leg-* from then on), media both ways (each leg's read frames are the
other's written frames, through each one's media bugs), the A-leg answered if it was not; DTMF on
either leg is dequeued (DTMF events) and sent out of the other (to a loopback partner; approximated:
not in band to a scripted caller or callee), and `bridge_terminate_key` on the A-leg ends the bridge. It ends when a leg
hangs up or on the key: CHANNEL_UNBRIDGE on the A-leg; a B-leg still up is hung up
(NORMAL_CLEARING, or the A-leg's cause; ORIGINATOR_CANCEL if it never answered);
bridge_hangup_cause = the B-leg's cause; last_bridge_role=originator when the A-leg hung up; then
the A-leg is hung up with that cause if hangup_after_bridge is true (unset: it goes on).

Approximated: `failure_causes`, `transfer_on_fail`, park/transfer_after_bridge, camp-on, the
`monitor_early_media` knobs are not modelled;
queued (not event-locked) messages of the A-leg run nested during the bridge.

A message queued on the B-leg (uuid_broadcast's bleg/both, captured in
tests/fixtures/fs-captures/bridge-broadcast.json) runs at once, inside the bridge, suspending it
both ways: the callee hears only the app, the caller silence, then the bridge goes on (what either
side said meanwhile is dropped). A message queued on the A-leg waits while the bridge runs
event-locked, as callfork runs it. Approximated: the B-leg's app runs in a greenlet of its own
beside the A-leg's loop (FreeSWITCH: in the B-leg's bridge thread).
"""
from __future__ import annotations

import logging
import time

import gevent

from .. import dialstring
from ..bleg import FrameLink, LinkSource, new_leg
from ..loopback import send_dtmf_to_far_end
from ..media import ArraySource, MediaError, open_source
from .registry import app

log = logging.getLogger('switch_sim.apps')

DIALSTATUS = {'ORIGINATOR_CANCEL': 'CANCEL', 'USER_BUSY': 'BUSY', 'NO_ANSWER': 'NOANSWER',
              'DESTINATION_OUT_OF_ORDER': 'INVALIDARGS', 'INVALID_PROFILE': 'INVALIDARGS',
              'CALL_REJECTED': 'DONTCALL'}
ALWAYS_CONTINUE = ('NO_ANSWER', 'NO_USER_RESPONSE', 'ORIGINATOR_CANCEL')


def _true(value) -> bool:
    return str(value or '').strip().lower() in ('true', 'yes', 'on', 'enabled', 'active', 'allow', '1')


def _seconds(value, default=None):
    try:
        n = float(value)
    except (TypeError, ValueError):
        return default
    return n if n > 0 else default


def ringback_source(ch, value: str):
    """The ringback the A-leg hears: a teletone `%(...)` (looped) or a file; None if it cannot open."""
    try:
        if value.startswith('%(') or value.startswith('L=') or value.startswith('v='):
            return open_source('tone_stream://%s;loops=-1' % value, ch.sim.media, ch.variables)
        src = open_source(value, ch.sim.media, ch.variables)
        if isinstance(src, ArraySource):
            src.loop = len(src.samples) > 0
        return src
    except (MediaError, ValueError) as exc:
        log.error('[%s] ringback %s: %s', ch.uuid, value, exc)
        return None


class Originate:
    """One switch_ivr_originate from the A-leg `a` over a parsed dial string."""

    def __init__(self, a, dial: dialstring.DialString):
        self.a = a
        self.dial = dial
        ignore = dial.variables.get('ignore_early_media', a.get_variable('ignore_early_media'))
        self.early_ok = not (_true(ignore) or ignore in ('consume', 'ring_ready')
                             or _true(dial.variables.get('bridge_early_media')))
        self.bridge_early_media = _true(dial.variables.get('bridge_early_media'))
        self.passthrough = None          # (leg, its read tap) while its early media reaches the A-leg
        self.timeout = _seconds(a.get_variable('call_timeout')) or \
            _seconds(dial.variables.get('originate_timeout')) or 60.0
        self.created: list = []          # every B-leg channel, in creation order
        self.confirming: dict = {}       # answered legs asked for group_confirm_key: pressed it yet?
        self.ringback = None

    def _leg_failed(self, leg) -> None:
        if not self.a.hungup:
            self.a.set_variable('last_bridge_hangup_cause', leg.hangup_cause)
            proto = leg.get_variable('proto_specific_hangup_cause')
            if proto:
                self.a.set_variable('last_bridge_proto_specific_hangup_cause', proto)

    def run(self):
        """-> (winner channel, None) or (None, cause)."""
        cause = 'NORMAL_CLEARING'
        try:
            for group in self.dial.groups:
                if self.a.hungup:
                    return None, 'ORIGINATOR_CANCEL'
                winner, cause = self._group(group)
                if winner is not None or cause == 'ORIGINATOR_CANCEL':
                    return winner, cause
            return None, cause
        finally:
            if self.ringback is not None and self.a.write_source is self.ringback:
                self.a.write_source = None
            self._end_passthrough()

    def _group(self, group):
        legs, cause = [], 'NORMAL_CLEARING'
        for leg in group:
            ch, failed = new_leg(self.a.sim, self.a, leg, self.early_ok)
            if ch is None:
                cause = failed
                continue
            if ch.name.startswith('loopback/') and not (self.a.answered or self.a.early_media):
                self.a.pre_answer()       # mod_loopback pre-answers the caller (loopback_no_pre_answer)
            legs.append((ch, _seconds(leg.variables.get('leg_timeout'))))
            self.created.append(ch)
            ch.on_hangup(self._leg_failed)
        if not legs:
            return None, cause
        started = int(time.time())        # switch_epoch_time_now: whole seconds
        ended: list = []
        for ch, _t in legs:
            ch.on_hangup(ended.append)
        instant = _true(self.a.get_variable('instant_ringback'))
        while True:
            if self.a.hungup:
                for ch, _t in legs:
                    if not ch.hungup:
                        ch.set_variable('last_bridge_hangup_cause', self.a.hangup_cause)
                    ch.hangup('ORIGINATOR_CANCEL')
                return None, 'ORIGINATOR_CANCEL'
            for ch, _t in legs:
                if ch.answered and not ch.hungup and ch not in self.confirming and self._confirm_key(ch):
                    self._start_confirm(ch, legs, int(time.time()) - started)
            winner = next((ch for ch, _t in legs if not ch.hungup and (
                (ch.answered and (ch not in self.confirming or self.confirming[ch]))
                or (self.early_ok and ch.early_media and not ch.answered))), None)
            if winner is not None:
                for ch, _t in legs:
                    if ch is not winner:
                        ch.hangup('LOSE_RACE')
                return winner, None
            if all(ch.hungup for ch, _t in legs):
                return None, ended[-1].hangup_cause if ended else 'NORMAL_CLEARING'
            elapsed = int(time.time()) - started
            for ch, leg_timeout in legs:
                if leg_timeout is not None and elapsed > leg_timeout:
                    ch.hangup('ALLOTTED_TIMEOUT')
            if elapsed >= self.timeout:
                for ch, _t in legs:
                    ch.hangup('NO_ANSWER')
            self._ring(instant or any(ch.progress_us or ch.early_media for ch, _t in legs))
            self._pass_early_media(legs)
            if not self.a.wait_frame():
                continue

    def _confirm_key(self, ch) -> str:
        return ch.get_variable('group_confirm_key') or self.dial.variables.get('group_confirm_key') or ''

    def _start_confirm(self, ch, legs, elapsed: int) -> None:
        """An answered leg with a group_confirm_key is not the winner until it presses the key:
        collect_thread_run reads len(key) digits over group_confirm_file (each read waits
        group_confirm_read_timeout ms, 5000) until they are the key; group_confirm_timeout gives
        the leg that many more seconds (0: no limit)."""
        key = self._confirm_key(ch)
        var = lambda name: ch.get_variable(name) or self.dial.variables.get(name)   # noqa: E731
        prompt = var('group_confirm_file')
        error_prompt = var('group_confirm_error_file')
        read_ms = int(_seconds(var('group_confirm_read_timeout')) or 5000)
        extend = var('group_confirm_timeout')
        if extend is not None and extend.strip().isdigit():
            for i, (leg, _t) in enumerate(legs):
                if leg is ch:
                    legs[i] = (leg, elapsed + int(extend) if int(extend) else None)
        self.confirming[ch] = False

        def collect(leg):
            from .digits import ivr_read
            from .playback import play_file
            while not leg.hungup:
                _status, digits = ivr_read(leg, len(key), len(key), prompt, None, read_ms, '', read_ms)
                if digits == key:
                    self.confirming[leg] = True
                    return
                if error_prompt:
                    play_file(leg, error_prompt)
        ch.run_call(collect)

    def _pass_early_media(self, legs) -> None:
        """bridge_early_media (switch_ivr_originate's ignore_early_media == 3): the early media of a
        single leg is what the A-leg hears while it rings (pre-answered first), unless a `ringback`
        is set; the originate goes on waiting for an answer."""
        if not self.bridge_early_media or self.passthrough is not None or len(legs) != 1:
            return
        leg = legs[0][0]
        if not leg.early_media or leg.answered or leg.hungup or self.a.get_variable('ringback'):
            return
        if not (self.a.answered or self.a.early_media):
            self.a.pre_answer()
        link = FrameLink()
        leg.read_taps.append(link.push)
        self.passthrough = (leg, link.push)
        self.a.write_source = LinkSource(link)

    def _end_passthrough(self) -> None:
        if self.passthrough is None:
            return
        leg, tap = self.passthrough
        self.passthrough = None
        if tap in leg.read_taps:
            leg.read_taps.remove(tap)
        if isinstance(self.a.write_source, LinkSource) and not self.a.hungup:
            self.a.write_source = None

    def _ring(self, ringing: bool) -> None:
        value = self.a.get_variable('ringback')
        if not ringing or not value or self.ringback is not None:
            return
        if not (self.a.answered or self.a.early_media):
            self.a.pre_answer()
        self.ringback = ringback_source(self.a, value) or False
        if self.ringback:
            self.a.write_source = self.ringback

    def report(self, winner, cause) -> None:
        """originate_disposition, DIALSTATUS, originated_legs, originate_causes on the A-leg."""
        a = self.a
        legs = ['%s;%s;%s' % (ch.uuid, ch.callee_name, ch.callee_number) for ch in self.created]
        causes = ['%s;%s' % (ch.uuid, 'NONE' if ch is winner else (ch.hangup_cause or 'NONE'))
                  for ch in self.created]
        if winner is not None:
            a.set_variable('originate_disposition', 'SUCCESS')
            a.set_variable('DIALSTATUS', 'SUCCESS')
        else:
            a.set_variable('originate_disposition', cause)
            a.set_variable('DIALSTATUS', DIALSTATUS.get(cause, cause))
        if legs:
            a.set_variable('originated_legs', legs[0] if len(legs) == 1 else 'ARRAY::' + '|:'.join(legs))
            a.set_variable('originate_causes', causes[0] if len(causes) == 1 else 'ARRAY::' + '|:'.join(causes))


def handle_cause(a, cause: str) -> None:
    """switch_channel_handle_cause (continue_on_fail; failure_causes/transfer_on_fail not modelled)."""
    if a.hungup or cause == 'ATTENDED_TRANSFER':
        return
    value = a.get_variable('continue_on_fail')
    if value is None:
        if cause in ALWAYS_CONTINUE:
            return
    elif _true(value):
        return
    else:
        from ..causes import Q850
        listed = [v.strip().upper() for v in value.split(',')]
        if cause in listed or str(Q850.get(cause, '')) in listed:
            return
    a.hangup(cause)


def _bridge_headers(a, b):
    return [('Bridge-A-Unique-ID', a.uuid), ('Bridge-B-Unique-ID', b.uuid)]


def bridge_media(a, b) -> None:
    """Run the bridge of `a` (in its session) and `b` until one hangs up or the terminate key."""
    a_to_b, b_to_a = FrameLink(), FrameLink()
    tap_a, tap_b = a_to_b.push, b_to_a.push
    a.read_taps.append(tap_a)
    b.read_taps.append(tap_b)
    a.write_source, b.write_source = LinkSource(b_to_a), LinkSource(a_to_b)
    key = a.get_variable('bridge_terminate_key') or ''
    inline = None             # the greenlet running a message queued on the B-leg (a broadcast)
    try:
        while not a.hungup and not b.hungup:
            if b.answered and not a.answered:
                a.answer()
            if not a.wait_frame():
                break
            a.service_messages()
            if inline is None and b.messages:
                # audio_bridge_thread: the B-leg runs it at once, inside the bridge, which is
                # suspended both ways meanwhile: the B-leg writes only the app's audio, the A-leg
                # nothing (tests/fixtures/fs-captures/bridge-broadcast.json)
                a.write_source = None
                inline = gevent.spawn(b.run_next_message)
            elif inline is not None and inline.ready():
                inline = None
                a_to_b.frames.clear()
                b_to_a.frames.clear()
                if not a.hungup:
                    a.write_source = LinkSource(b_to_a)
            if a.take_break():
                pass                      # uuid_break does not end a bridge
            stop = False
            while a.dtmf_queue and not stop:
                digit = a.dequeue_dtmf()
                stop = bool(key) and digit == key[0]
                if not stop and digit:
                    send_dtmf_to_far_end(b, digit)      # passed on to the callee
            while b.dtmf_queue:                          # the callee's digits reach the caller
                digit = b.dequeue_dtmf()
                if digit:
                    send_dtmf_to_far_end(a, digit)
            if stop:
                break
    finally:
        for ch, tap in ((a, tap_a), (b, tap_b)):
            if tap in ch.read_taps:
                ch.read_taps.remove(tap)
        b.write_source = None
        if not a.hungup:
            a.write_source = None


@app('bridge')
def app_bridge(a, data):
    try:
        dial = dialstring.parse(data)
    except dialstring.DialStringError as exc:
        log.error('[%s] bridge %s: %s', a.uuid, data, exc)
        a.set_variable('originate_disposition', 'failure')
        a.set_variable('DIALSTATUS', 'INVALIDARGS')
        return
    originate = Originate(a, dial)
    winner, cause = originate.run()
    originate.report(winner, cause)
    if winner is None:
        a.set_variable('originate_failed_cause', cause)
        handle_cause(a, cause)
        return
    b = winner
    for key, value in (('last_bridge_to', b.uuid), ('signal_bond', b.uuid), ('bridge_uuid', b.uuid),
                       ('bridge_channel', b.name)):
        a.set_variable(key, value)
    b.set_variable('last_bridge_to', a.uuid)
    b.set_variable('bridge_uuid', a.uuid)
    a.other_leg = ('originatee', b)
    a.fire_event('CHANNEL_BRIDGE', pre_headers=_bridge_headers(a, b))
    bridge_media(a, b)
    a_hung_up = a.hungup
    if not b.hungup:
        if a_hung_up:
            b.set_variable('last_bridge_hangup_cause', a.hangup_cause)
        b.hangup(('NORMAL_CLEARING' if not a_hung_up else a.hangup_cause) if b.answered
                 else 'ORIGINATOR_CANCEL')
    elif not a_hung_up:
        a.set_variable('last_bridge_hangup_cause', b.hangup_cause)
    a.set_variable('bridge_hangup_cause', b.hangup_cause)
    if a_hung_up:
        a.set_variable('last_bridge_role', 'originator')
    a.fire_event('CHANNEL_UNBRIDGE', pre_headers=_bridge_headers(a, b))
    if a.hungup:
        return
    if not b.answered:
        handle_cause(a, b.hangup_cause)
    elif _true(a.get_variable('hangup_after_bridge')):
        a.hangup(b.hangup_cause)
