"""One simulated FreeSWITCH channel: its caller profile, state machine, variables, events, session
greenlet and hangup path. The media side (clock, bugs, DTMF) is switch_sim.channel_media's
MediaPath, app execution (sendmsg messages, park, transfer) switch_sim.channel_exec's Execution;
hangup causes are in switch_sim.causes, the CDR variables in switch_sim.cdr.

Owns, per channel: the caller profile and channel state (Channel-State / Call-State / Answer-State and
the state number, kept separately as FreeSWITCH does), the ordered variable list (setting a variable
moves it to the end, an empty value unsets it, as switch_channel_set_variable), firing events with the
channel data block, the answer states (ring_ready, pre_answer, answer), the session greenlet that runs
the dialplan, and the hangup path
(CHANNEL_HANGUP -> EXECUTE_COMPLETE of the running app -> UNPARK -> EXECUTE_COMPLETE(socket) ->
CHANNEL_STATE(CS_HANGUP) -> CHANNEL_CALLSTATE -> media bugs closed (RECORD_STOP, MEDIA_BUG_STOP) ->
CHANNEL_STATE(CS_REPORTING) -> CHANNEL_HANGUP_COMPLETE -> listeners told -> CHANNEL_DESTROY once the
controlling socket let go).

Approximated:
* `${var}` expansion handles plain `${name}` only (no `${api(...)}` and no nested expressions).
* The caller profile of an inbound call is a SIP-like leg (Source mod_sofia, Context public, no
  callee id); an originated channel gets the profile switch_ivr_originate gives it (apis/calls.py),
  with the caller and callee id flipped once it has something to run (`sort_cid`). The orig caller
  id and ANI are the caller id the profile was created with. Empty profile fields are left out, as
  FreeSWITCH does.
"""
from __future__ import annotations

import logging
import re
import tempfile
import time
import uuid as uuid_mod

import gevent
from gevent.event import Event as GEvent

from .causes import normalize_cause
from .cdr import cdr_variables
from .channel_exec import Execution
from .channel_media import MediaPath

log = logging.getLogger('switch_sim.channel')

CS_NUMBERS = {'CS_NEW': 0, 'CS_INIT': 1, 'CS_ROUTING': 2, 'CS_SOFT_EXECUTE': 3, 'CS_EXECUTE': 4,
              'CS_EXCHANGE_MEDIA': 5, 'CS_PARK': 6, 'CS_CONSUME_MEDIA': 7, 'CS_HIBERNATE': 8,
              'CS_RESET': 9, 'CS_HANGUP': 10, 'CS_REPORTING': 11, 'CS_DESTROY': 12}
CALL_STATE_NUMBERS = {'DOWN': 0, 'DIALING': 1, 'RINGING': 2, 'EARLY': 3, 'ACTIVE': 4, 'HELD': 5,
                      'RING_WAIT': 6, 'HANGUP': 7, 'UNHELD': 8}

_VAR_RE = re.compile(r'\$\{([^{}]+)\}')


class Channel(MediaPath, Execution):
    """A simulated channel. See the module docstring; the public surface is what switch_sim apps,
    APIs, ESL listeners and the audio-fork emulation use."""

    read_rate = 8000

    def __init__(self, sim, *, uuid: str | None = None, direction: str = 'inbound',
                 caller_number: str = '', caller_name: str = '', destination: str = '',
                 variables: dict | None = None, caller=None, name: str | None = None,
                 dialplan: list[tuple[str, str]] | None = None, context: str = 'public',
                 profile: dict | None = None):
        self.sim = sim
        self.uuid = uuid or str(uuid_mod.uuid4())
        self.direction = direction
        self.caller_number = caller_number
        self.caller_name = caller_name
        self.destination = destination
        self.context = context
        # the rest of the caller profile (switch_caller_profile_new keeps the caller id it was made
        # with as the orig caller id and, unless told otherwise, as the ANI); `profile` overrides
        # these for an originated channel (apis/calls.py)
        self.orig_caller_name = caller_name
        self.orig_caller_number = caller_number
        self.callee_name = ''
        self.callee_number = ''
        self.ani = caller_number
        self.source = 'mod_sofia'
        self.dialplan_name = 'XML'
        for key, value in (profile or {}).items():
            if not hasattr(self, key):
                raise TypeError('unknown caller-profile field %r' % key)
            setattr(self, key, value)
        self._cid_sorted = False      # CF_DIALPLAN: the outbound channel's caller id was sorted
        self.name = name or ('sofia/sim/%s@127.0.0.1' % (destination if direction == 'outbound'
                                                           else caller_number or 'anonymous'))
        self.caller = caller
        self.dialplan = list(dialplan or [])
        self.variables: dict[str, str] = {}
        self.temp_dir = tempfile.gettempdir()
        self.session_id = sim.next_session_id() if hasattr(sim, 'next_session_id') else 1

        # state
        self.running_state = 'CS_NEW'
        self.state_number = 0
        self.call_state = 'DOWN'
        self.answer_state = 'ringing'
        self.answered = False
        self.early_media = False
        self.hungup = False
        self.hangup_cause: str | None = None
        self.parked = False
        self.gone = GEvent()          # set after CHANNEL_HANGUP_COMPLETE
        self.controller = None        # the outbound ESL session controlling this channel
        self.other_leg = None         # ('originator' | 'originatee', channel): Other-Leg-* headers (bridge)
        self.divert_events = False
        self.events_fired: list[str] = []
        self.answer_first = False
        self.ready = GEvent()         # set once the channel is set up (answered first, for originate)

        now_us = int(time.time() * 1_000_000)
        self.created_us = now_us
        self.answered_us = 0
        self.progress_us = 0
        self.progress_media_us = 0
        self.hangup_us = 0
        self._init_media()
        self._init_execution()
        self._session_greenlet = None
        self._hangup_callbacks: list = []

        base_vars = [('direction', direction), ('uuid', self.uuid), ('session_id', str(self.session_id)),
                     ('channel_name', self.name), ('read_codec', 'L16'), ('read_rate', '8000'),
                     ('write_codec', 'L16'), ('write_rate', '8000')]
        for key, value in base_vars:
            self.variables[key] = value
        for key, value in (variables or {}).items():
            self.set_variable(key, value)
        self.set_variable('call_uuid', self.uuid)
        self.running_state = 'CS_EXECUTE'
        self.state_number = 4
        self.call_state = 'RINGING' if direction == 'inbound' else 'DOWN'

    # ------------------------------------------------------------------ variables
    def set_variable(self, name: str, value) -> None:
        """switch_channel_set_variable: empty/None unsets; a set moves the variable to the end."""
        self.variables.pop(name, None)
        if value is None or value == '':
            return
        self.variables[name] = str(value)

    def get_variable(self, name: str, default=None):
        if name == 'uuid':
            return self.uuid
        return self.variables.get(name, default)

    def expand(self, text: str) -> str:
        """${var} expansion (plain names only), unless app_disable_expand_variables=true."""
        if '${' not in text or self.variables.get('app_disable_expand_variables') == 'true':
            return text
        return _VAR_RE.sub(lambda m: self.variables.get(m.group(1).strip(), ''), text)

    # ------------------------------------------------------------------ events
    def profile_headers(self, prefix: str) -> list[tuple[str, str]]:
        answered_us = self.answered_us
        items = [
            ('Direction', self.direction), ('Logical-Direction', self.direction), ('Dialplan', self.dialplan_name),
            ('Caller-ID-Name', self.caller_name), ('Caller-ID-Number', self.caller_number),
            ('Orig-Caller-ID-Name', self.orig_caller_name), ('Orig-Caller-ID-Number', self.orig_caller_number),
            ('Callee-ID-Name', self.callee_name), ('Callee-ID-Number', self.callee_number),
            ('ANI', self.ani), ('Destination-Number', self.destination),
            ('Unique-ID', self.uuid), ('Source', self.source), ('Context', self.context),
            ('Channel-Name', self.name), ('Profile-Index', '1'),
            ('Profile-Created-Time', str(self.created_us)), ('Channel-Created-Time', str(self.created_us)),
            ('Channel-Answered-Time', str(answered_us)), ('Channel-Progress-Time', str(self.progress_us)),
            ('Channel-Progress-Media-Time', str(self.progress_media_us)),
            ('Channel-Hangup-Time', str(self.hangup_us)), ('Channel-Transfer-Time', '0'),
            ('Channel-Resurrect-Time', '0'), ('Channel-Bridged-Time', '0'),
            ('Channel-Last-Hold', '0'), ('Channel-Hold-Accum', '0'), ('Screen-Bit', 'true'),
            ('Privacy-Hide-Name', 'false'), ('Privacy-Hide-Number', 'false'),
        ]
        # switch_caller_profile_event_set_data skips empty strings
        return [('%s-%s' % (prefix, k), v) for k, v in items if v != '']

    def channel_data_headers(self) -> list[tuple[str, str]]:
        headers = [
            ('Channel-State', self.running_state), ('Channel-Call-State', self.call_state),
            ('Channel-State-Number', str(self.state_number)), ('Channel-Name', self.name),
            ('Unique-ID', self.uuid), ('Call-Direction', self.direction),
            ('Presence-Call-Direction', self.direction), ('Channel-HIT-Dialplan', 'true'),
            ('Channel-Call-UUID', self.uuid), ('Answer-State', self.answer_state),
        ]
        if self.hangup_cause:
            headers.append(('Hangup-Cause', self.hangup_cause))
        headers += [('Channel-Read-Codec-Name', 'L16'), ('Channel-Read-Codec-Rate', '8000'),
                    ('Channel-Read-Codec-Bit-Rate', '128000'), ('Channel-Write-Codec-Name', 'L16'),
                    ('Channel-Write-Codec-Rate', '8000'), ('Channel-Write-Codec-Bit-Rate', '128000')]
        headers += self.profile_headers('Caller')
        if self.other_leg is not None:   # switch_caller_profile_event_set_data of the bridge's other leg
            headers.append(('Other-Type', self.other_leg[0]))
            headers += self.other_leg[1].profile_headers('Other-Leg')
        return headers

    def build_event(self, name: str, extra_headers=(), body: str | None = None, subclass: str | None = None,
                    with_variables: bool = True, pre_headers=(), prefix_headers=(), location=None):
        ev = self.sim.events.new(name, subclass=subclass, location=location, prefix_headers=prefix_headers)
        for key, value in pre_headers:
            ev.add(key, value)
        ev.headers.extend(self.channel_data_headers())
        if with_variables:
            ev.headers.extend(('variable_' + k, v) for k, v in self.variables.items())
        for key, value in extra_headers:
            ev.add(key, value)
        ev.body = body
        return ev

    def fire_event(self, name: str, extra_headers=(), body: str | None = None, subclass: str | None = None,
                   with_variables: bool = True, *, pre_headers=(), prefix_headers=(), location=None):
        """Build an event with channel data (+ variables) + extra headers and deliver it."""
        ev = self.build_event(name, extra_headers, body, subclass, with_variables,
                              pre_headers=pre_headers, prefix_headers=prefix_headers, location=location)
        self.events_fired.append(name if name != 'CUSTOM' else 'CUSTOM %s' % (subclass or ''))
        divert_to = self.controller if (self.divert_events and name == 'DTMF') else None
        self.sim.deliver(ev, divert_to=divert_to)
        return ev

    # ------------------------------------------------------------------ caller id
    def sort_cid(self) -> None:
        """switch_channel_sort_cid, run when the channel is given its extension (mod_commands'
        `originate ... &app`, or the dialplan): an outbound channel's caller and callee id are
        flipped the first time (CF_DIALPLAN), so that the channel's caller is the party it called."""
        if self.direction != 'outbound' or self._cid_sorted:
            return
        self._cid_sorted = True
        self.flip_cid()

    def flip_cid(self) -> None:
        """switch_channel_flip_cid on a channel that is not bridged: caller id <-> callee id, the old
        caller id kept in pre_transfer_caller_id_name/number, channel_cid_flipped=yes, CALL_UPDATE."""
        name, number = self.caller_name, self.caller_number
        self.set_variable('pre_transfer_caller_id_name', name)
        self.caller_name, self.callee_name = self.callee_name, name
        self.set_variable('pre_transfer_caller_id_number', number)
        self.caller_number, self.callee_number = self.callee_number, number
        self.set_variable('channel_cid_flipped', 'yes')
        self.fire_event('CALL_UPDATE', pre_headers=[('Direction', 'RECV')])

    def _set_running_state(self, state: str) -> None:
        self.running_state = state
        self.state_number = CS_NUMBERS[state]
        self.fire_event('CHANNEL_STATE', with_variables=False)

    def _set_call_state(self, state: str) -> None:
        old = self.call_state
        if old == state:
            return
        self.call_state = state
        self.fire_event('CHANNEL_CALLSTATE', with_variables=False,
                        pre_headers=[('Original-Channel-Call-State', old),
                                     ('Channel-Call-State-Number', str(CALL_STATE_NUMBERS[state]))])

    # ------------------------------------------------------------------ answer states
    def ring_ready(self) -> None:
        if self.hungup or self.answered or self.progress_us:
            return
        self.progress_us = int(time.time() * 1_000_000)
        self.fire_event('CHANNEL_PROGRESS')

    def pre_answer(self) -> None:
        """Early media (183): CHANNEL_PROGRESS_MEDIA; no-op when answered/early already."""
        if self.hungup or self.answered or self.early_media:
            return
        self.early_media = True
        self.answer_state = 'early'
        self.progress_media_us = int(time.time() * 1_000_000)
        self.set_variable('endpoint_disposition', 'EARLY MEDIA')
        self.fire_event('CHANNEL_PROGRESS_MEDIA')
        self._set_call_state('EARLY')
        self._media_started()

    def answer(self, callstate_now: bool = True) -> None:
        if self.hungup or self.answered:
            return
        self.answered = True
        self.answer_state = 'answered'
        self.answered_us = int(time.time() * 1_000_000)
        self.set_variable('endpoint_disposition', 'ANSWER')
        self.fire_event('CHANNEL_ANSWER')
        self._media_started()
        if callstate_now:
            self._set_call_state('ACTIVE')

    def _media_started(self) -> None:
        if self.caller is not None:
            self.caller.media_started(self)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.sim.register_channel(self)
        self._media_greenlet = gevent.spawn(self._media_loop)
        self._session_greenlet = gevent.spawn(self._session_main)

    def _session_main(self) -> None:
        try:
            self.fire_event('CHANNEL_CREATE')
            if self.direction == 'outbound':
                self.fire_event('CHANNEL_OUTGOING')
            if self.answer_first:          # originate: the far end answers at once
                self.answer()
            self._run_dialplan()
        except Exception:
            log.exception('[%s] session failed', self.uuid)
        finally:
            self._end_session()

    def _run_dialplan(self) -> None:
        """The channel gets its extension (an outbound one flips its caller id) and runs its apps,
        a transfer replacing what is left."""
        self.sort_cid()
        self.ready.set()
        pending = list(self.dialplan)
        while pending and not self.hungup:
            app, arg = pending.pop(0)
            self.execute(app, arg)
            if self._transfer is not None:
                pending, self._transfer = list(self._transfer), None

    def _end_session(self) -> None:
        """The session is over: hang up if nothing did, then tear down."""
        self.ready.set()
        if not self.hungup:
            self.hangup('NORMAL_CLEARING')
        try:
            self._teardown()
        except Exception:
            log.exception('[%s] teardown failed', self.uuid)

    def on_hangup(self, callback) -> None:
        """callback(channel) runs right after CHANNEL_HANGUP fired (or at once if already hung up)."""
        if self.hungup:
            callback(self)
        else:
            self._hangup_callbacks.append(callback)

    def hangup(self, cause: str = 'NORMAL_CLEARING') -> None:
        """switch_channel_hangup: fires CHANNEL_HANGUP now; the rest of the hangup path runs in the
        session greenlet once the running app has returned."""
        if self.hungup:
            return
        self.hangup_cause = normalize_cause(cause)
        self.hungup = True
        self.hangup_us = int(time.time() * 1_000_000)
        self.state_number = CS_NUMBERS['CS_HANGUP']
        self.answer_state = 'hangup'
        self.write_source = None
        self.fire_event('CHANNEL_HANGUP')
        for cb in self._hangup_callbacks:
            try:
                cb(self)
            except Exception:
                log.exception('[%s] hangup callback failed', self.uuid)
        self._hangup_callbacks = []
        self._wake_frame_waiters()
        if self._session_greenlet is None:
            gevent.spawn(self._teardown)

    def _teardown(self) -> None:
        if self.gone.is_set():
            return
        self._set_running_state('CS_HANGUP')
        self._set_call_state('HANGUP')
        self._close_media()
        self._set_running_state('CS_REPORTING')
        for name, value in cdr_variables(self):
            self.set_variable(name, value)
        self.fire_event('CHANNEL_HANGUP_COMPLETE', pre_headers=[('Hangup-Cause', self.hangup_cause)])
        if self.caller is not None:
            try:
                self.caller.finished(self)
            except Exception:
                log.exception('[%s] caller finish failed', self.uuid)
        self.sim.channel_gone(self)
        self.gone.set()
        gevent.spawn(self._destroy_when_released)

    def _destroy_when_released(self) -> None:
        controller = self.controller
        if controller is not None:
            controller.released.wait(timeout=3600)
        self.running_state = 'CS_DESTROY'
        self.state_number = CS_NUMBERS['CS_DESTROY']
        self.fire_event('CHANNEL_DESTROY')

    @property
    def duration_s(self) -> float:
        end = self.hangup_us or int(time.time() * 1_000_000)
        return (end - self.created_us) / 1e6
