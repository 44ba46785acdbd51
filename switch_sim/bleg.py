"""The channels `bridge` creates (B-legs): their caller profile, variables and events, the frame
link media flows through, and which endpoint gives what (tests/fixtures/fs-captures/bridge.json,
bridge.md).

Owns:
* `OriginatedChannel`: a B-leg. Events CHANNEL_OUTGOING, CHANNEL_CREATE, CHANNEL_ORIGINATE (in that
  order, as captured), then whatever its far end does (progress, early media, answer, hangup),
  each with `Other-Type: originator` and the A-leg's profile as `Other-Leg-*`. It runs no dialplan:
  its session waits for hangup and runs `execute_on_answer` and `execute_on_answer_*` (`app arg`)
  once it is answered (on a loopback pair, the -a leg runs them; its hangup reaches the -b leg). Caller
  profile: the caller id asked for (origination_caller_id_name/number, else the A-leg's caller
  id), callee id "Outbound Call" and switch_sanitize_number(<endpoint data>), the A-leg's context
  and source. Variables: the leg's `{}`/`[]` variables, then originator, originator_codec,
  originate_early_media, signal_bond and call_uuid (the A-leg's uuid).
* `FrameLink` / `LinkedFar`: the far end of a channel that is another channel (a loopback pair, a
  bridge): what one channel writes is what the other reads, a frame it did not get reads as CNG.
* `new_leg(sim, a, leg, early_ok)`: the B-leg for one dial-string leg, or a cause when the endpoint
  fails without a channel: `error/<cause>` (that cause), `sofia/gateway/<unknown>/...`
  (INVALID_GATEWAY), `user/<unknown>` (SUBSCRIBER_ABSENT); `loopback/...` is a pair
  (switch_sim.loopback); any other `sofia/...` or `user/...` reaches a callee scripted with
  `sim_callee` (switch_sim.callees), or else gets a channel that fails at once with
  NORMAL_TEMPORARY_FAILURE (what an unreachable SIP address gave on FreeSWITCH).

Approximated: the channel names of sofia/user legs are `sofia/<profile>/<number>@<host>` shapes,
not checked against FreeSWITCH for every form; codecs are L16 at 8 kHz everywhere.
"""
from __future__ import annotations

import collections
import logging

import gevent
import numpy as np
from gevent.event import Event as GEvent

from .apis.calls import sanitize_number
from .causes import normalize_cause
from .channel import Channel
from .media import FRAME_SAMPLES

log = logging.getLogger('switch_sim.bleg')

_LINK_FRAMES = 10       # frames a link holds before the oldest is dropped (200 ms)


class FrameLink:
    """Frames written by one channel, waiting to be read by another."""

    def __init__(self):
        self.frames: collections.deque = collections.deque(maxlen=_LINK_FRAMES)

    def push(self, frame) -> None:
        self.frames.append(None if frame is None else np.array(frame, dtype=np.int16, copy=True))

    def pull(self):
        return self.frames.popleft() if self.frames else None


class LinkSource:
    """A write source (channel.write_source) that writes what a link holds (silence when empty)."""

    done = False
    file_type = None

    def __init__(self, link: FrameLink):
        self.link = link

    def read(self, n: int):
        frame = self.link.pull()
        if frame is None:
            return np.zeros(n, dtype=np.int16)
        return frame[:n] if len(frame) >= n else np.concatenate([frame, np.zeros(n - len(frame), np.int16)])


class LinkedFar:
    """The `caller` (far end) of a channel whose far end is another channel: reads what the other
    wrote (CNG when it wrote nothing in time), and hands on what this channel writes."""

    def __init__(self, inbound: FrameLink, outbound: FrameLink):
        self.inbound = inbound
        self.outbound = outbound

    def media_started(self, ch) -> None:
        pass

    def read_frame(self):
        return self.inbound.pull()

    def tick(self, ch, write, elapsed) -> None:
        self.outbound.push(write)

    def finished(self, ch) -> None:
        pass


class OriginatedChannel(Channel):
    """A B-leg of `bridge` (see the module docstring)."""

    def __init__(self, sim, a_leg, *, uuid, endpoint: str, variables: dict, name: str,
                 destination: str, early_ok: bool, caller=None):
        tech, _, data = endpoint.partition('/')
        cid_name = variables.get('origination_caller_id_name') or a_leg.caller_name
        cid_num = variables.get('origination_caller_id_number') or a_leg.caller_number
        profile = {'orig_caller_name': cid_name, 'orig_caller_number': cid_num, 'ani': cid_num,
                   'callee_name': 'Outbound Call', 'callee_number': sanitize_number(data or endpoint),
                   'source': a_leg.source}
        super().__init__(sim, uuid=uuid, direction='outbound', caller_number=cid_num, caller_name=cid_name,
                         destination=destination, variables=None, caller=caller, name=name, dialplan=[],
                         context=a_leg.context, profile=profile)
        self.a_leg = a_leg
        self.other_leg = ('originator', a_leg)
        for key, value in variables.items():
            self.set_variable(key, value)
        for key, value in (('originator', a_leg.uuid), ('originator_codec', 'L16@8000h@20i'),
                           ('originate_early_media', 'true' if early_ok else 'false'),
                           ('signal_bond', a_leg.uuid), ('call_uuid', a_leg.uuid)):
            self.set_variable(key, value)
        self._wake = GEvent()
        self._apps: collections.deque = collections.deque()

    def run_app(self, app: str, arg: str = '') -> None:
        """Run an app in this leg's session (execute_on_answer)."""
        self._apps.append(lambda: self.execute(app, arg))
        self._wake.set()

    def run_call(self, func) -> None:
        """Run `func(channel)` in this leg's session (the originate's group_confirm collector)."""
        self._apps.append(lambda: func(self))
        self._wake.set()

    def answer(self, callstate_now: bool = True) -> None:
        was = self.answered
        super().answer(callstate_now)
        if self.answered and not was:
            # switch_channel_execute_on: every variable named execute_on_answer* (execute_on_answer_1,
            # ...), in variable order
            for name, value in list(self.variables.items()):
                if name.startswith('execute_on_answer') and value.strip():
                    app, _, arg = value.strip().partition(' ')
                    self.run_app(app, arg)

    def hangup(self, cause: str = 'NORMAL_CLEARING') -> None:
        super().hangup(cause)
        self._wake.set()

    def _session_main(self) -> None:
        try:
            self.fire_event('CHANNEL_OUTGOING')
            self.fire_event('CHANNEL_CREATE')
            self.fire_event('CHANNEL_ORIGINATE')
            self.ready.set()
            while not self.hungup:
                self._wake.wait(1.0)
                self._wake.clear()
                while self._apps and not self.hungup:
                    self._apps.popleft()()
        except Exception:
            log.exception('[%s] B-leg session failed', self.uuid)
        finally:
            self.ready.set()
            if not self.hungup:
                self.hangup('NORMAL_CLEARING')
            self._teardown()


def _fail_soon(ch: Channel, cause: str) -> Channel:
    gevent.spawn(lambda: (ch.ready.wait(5), ch.hangup(cause)))
    return ch


def new_leg(sim, a_leg, leg, early_ok: bool):
    """-> (channel, None) or (None, cause) for one leg of a dial string (see the module docstring)."""
    from . import callees, loopback
    tech, data = leg.tech, leg.data
    if tech == 'error':
        return None, normalize_cause(data or 'NORMAL_CLEARING')
    uuid = leg.variables.get('origination_uuid')
    if uuid and sim.get_channel(uuid) is not None:
        return None, 'DESTINATION_OUT_OF_ORDER'
    kwargs = dict(uuid=uuid, endpoint=leg.endpoint, variables=leg.variables, early_ok=early_ok)
    if tech == 'loopback':
        return loopback.new_pair(sim, a_leg, data, kwargs), None
    if tech not in ('sofia', 'user'):
        return None, 'CHAN_NOT_IMPLEMENTED'
    script = callees.find(sim, leg.endpoint)
    if tech == 'sofia' and data.startswith('gateway/'):
        gateway, _, number = data[len('gateway/'):].partition('/')
        if script is None:
            return None, 'INVALID_GATEWAY'
        name, destination = 'sofia/gateway/%s/%s' % (gateway, number), number
    elif tech == 'user':
        if script is None:
            return None, 'SUBSCRIBER_ABSENT'
        user = data.split('@', 1)[0]
        name, destination = 'sofia/internal/%s' % user, user
    else:
        profile, _, uri = data.partition('/')
        uri = uri[4:] if uri.startswith('sip:') else uri
        name, destination = 'sofia/%s/%s' % (profile, uri), sanitize_number(data)
    if script is None:
        ch = OriginatedChannel(sim, a_leg, name=name, destination=destination, **kwargs)
        ch.set_variable('proto_specific_hangup_cause', 'sip:503')
        ch.set_variable('sip_hangup_disposition', 'recv_refuse')
        ch.start()
        return _fail_soon(ch, 'NORMAL_TEMPORARY_FAILURE'), None
    return callees.start_callee(sim, script, OriginatedChannel(
        sim, a_leg, name=name, destination=destination, caller=callees.callee_far_end(script), **kwargs)), None


__all__ = ['FrameLink', 'LinkSource', 'LinkedFar', 'OriginatedChannel', 'new_leg', 'FRAME_SAMPLES']
