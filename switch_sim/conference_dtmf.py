"""mod_conference's `dist-dtmf` member flag (Vobiz relayDTMF) in the simulated switch: what a
member's loop does with digits each 20 ms frame (`member_digits`, called by the `conference` app,
switch_sim/apps/conference.py, for a switch_sim.conference.Member).

Pinned to FreeSWITCH 1.10.12 by tests/fixtures/fs-captures/conference-dtmf.json (replayed by
tests/test_sim_conference_truth.py) and its conference_loop.c / conference_member.c:
* a member's own digits are dequeued as they arrive (their DTMF events fire on its channel);
* with dist-dtmf they go to every other member, newest first, but to members with `skip-dtmf`
  (conference_member_send_all_dtmf); without it they stay the member's (nobody gets them);
* each member sends the digits relayed to it out of its channel, one per frame of its loop
  (switch_core_session_send_dtmf): out of band, nothing is mixed into the room. Out of a loopback
  leg a digit reaches its partner as received DTMF (mod_loopback's send_dtmf), which fires the
  partner's DTMF event when the partner reads it.

Approximated: out of the simulator's own caller channel (no endpoint to signal), a sent digit is
played as its tone (250 ms, SWITCH_DEFAULT_DTMF_DURATION, then 50 ms of silence) into what the
caller hears, as the simulator's `uuid_send_dtmf` and `send_dtmf` do; digits sent in a row are
played one after the other.
"""
from __future__ import annotations

import collections

import gevent
import numpy as np

from .loopback import send_dtmf_to_far_end
from .media import dtmf_sequence

DTMF_MS = 250


def member_digits(member) -> None:
    """One frame of a member's loop: its digits read (and relayed with dist-dtmf), one digit
    relayed to it sent out."""
    ch = member.channel
    digits = ''
    while ch.has_dtmf():
        digits += ch.dequeue_dtmf() or ''
    if digits and member.dist_dtmf:
        for other in member.conference.newest_first():
            if other is not member and not other.skip_dtmf:
                other.dtmf_out.extend(digits)
    if member.dtmf_out:
        _send_out(member, member.dtmf_out.popleft())


def _send_out(member, digit: str) -> None:
    if send_dtmf_to_far_end(member.channel, digit):
        return
    if member.tones is None or member.tones.done:
        member.tones = _Tones(member.channel)
        member.channel.add_write_injector(member.tones)
    member.tones.add(dtmf_sequence(digit, DTMF_MS))


class _Tones:
    """A write injector playing digits' tones one after the other, then removing itself."""

    def __init__(self, channel):
        self.channel = channel
        self.pending = collections.deque()
        self.done = False

    def add(self, samples) -> None:
        self.pending.append(samples)

    def pull(self, nbytes: int) -> bytes:
        out = np.zeros(nbytes // 2, dtype=np.int16)
        filled = 0
        while filled < len(out) and self.pending:
            head = self.pending[0]
            take = min(len(head), len(out) - filled)
            out[filled:filled + take] = head[:take]
            filled += take
            if take == len(head):
                self.pending.popleft()
            else:
                self.pending[0] = head[take:]
        if not self.pending and not self.done:
            self.done = True
            gevent.spawn(self.channel.remove_write_injector, self)
        return out.tobytes()
