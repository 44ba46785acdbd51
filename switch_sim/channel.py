"""One simulated FreeSWITCH channel: state, variables, events, the 20 ms media clock, DTMF, app execution.

Owns, per channel: the caller profile and channel state (Channel-State / Call-State / Answer-State and
the state number, kept separately as FreeSWITCH does), the ordered variable list (setting a variable
moves it to the end, an empty value unsets it, as switch_channel_set_variable), firing events with the
channel data block, the media clock greenlet (absolute-deadline pacing, 8 kHz L16 mono, 160-sample
frames; see "Media" below), the DTMF queue (DTMF events fire when a digit is dequeued), the private message queue fed by
`sendmsg`, the session greenlet that runs the dialplan/park loop/apps, and the hangup path
(CHANNEL_HANGUP -> EXECUTE_COMPLETE of the running app -> UNPARK -> EXECUTE_COMPLETE(socket) ->
CHANNEL_STATE(CS_HANGUP) -> CHANNEL_CALLSTATE -> media bugs closed (RECORD_STOP, MEDIA_BUG_STOP) ->
CHANNEL_STATE(CS_REPORTING) -> CHANNEL_HANGUP_COMPLETE -> listeners told -> CHANNEL_DESTROY once the
controlling socket let go).

Media, per 20 ms tick, as FreeSWITCH's read and write paths do it (switch_core_io.c,
switch_core_media.c; each step is pinned by a replay of a real FreeSWITCH capture):
* read: once media is up, the caller's frame, or CNG when the caller sent none (a phone that
  suppresses silence; the caller's `vad`); read taps (the blocking `record` and `wait_for_silence`
  apps) see it with its CNG flag; every bug with a read stream gets it (CNG as 0xFFFF samples),
  then every READ_PING bug is called;
* write: a frame only when the running app writes one: a playback source (playback, speak, tones),
  or the silence of `silence_writer`, which the running app sets: park reads
  `send_silence_when_idle` once, when media first comes up; sleep and digit collection read it on
  every call; `record` writes low noise (record_waste_resources, on by default). Any other app, and
  park without that variable, writes nothing: then no bug sees a write, nothing is mixed in by a
  SMBF_WRITE_REPLACE bug (mod_audio_fork's bidirectional audio stays in its buffer) and the caller
  hears silence. A written frame goes through the bugs in the order they were attached: a
  WRITE_STREAM bug copies it as it is at its turn, a WRITE_REPLACE bug changes it for the next ones;
* then `write_injectors` (digits `uuid_send_dtmf` sends, which go out of band even when nothing
  is written) are added to what the caller hears.

Approximated:
* Nesting: a message queued while a non-locked message's playback/speak/sleep/record/digit
  collection runs is executed nested inside it (the outer app pauses, then resumes), as
  switch_ivr_parse_all_events does; with `event-lock: true` messages run strictly one after the
  other. A PRIVATE_COMMAND event follows the EXECUTE_COMPLETE of non-locked messages, as in the
  capture.
* `${var}` expansion handles plain `${name}` only (no `${api(...)}` and no nested expressions).
* CHANNEL_PARK is fired when the controller sends its first command after `connect` (or 200 ms after
  `connect`), so a controller that subscribes right away sees it, as it does with FreeSWITCH.
* The cause table covers the usual causes; others get 0 in hangup_cause_q850.
* Caller DTMF is reported with `DTMF-Source: RTP` (a SIP caller's RFC 2833 digits; the loopback
  capture shows UNKNOWN) and `DTMF-Duration: 2000`.
* The caller profile is a SIP-like inbound leg (Source mod_sofia, Context public, no callee id):
  empty profile fields are left out, as FreeSWITCH does.
"""
from __future__ import annotations

import collections
import logging
import re
import tempfile
import time
import uuid as uuid_mod

import gevent
import numpy as np
from gevent.event import Event as GEvent

from .argsplit import atoi
from .events import header_value
from .media import FRAME_SAMPLES
from .media_bug import CNG_FILL, sln_silence

log = logging.getLogger('switch_sim.channel')

FRAME_BYTES = FRAME_SAMPLES * 2
FRAME_SECONDS = 0.02
_ZERO_FRAME = np.zeros(FRAME_SAMPLES, dtype=np.int16)

CS_NUMBERS = {'CS_NEW': 0, 'CS_INIT': 1, 'CS_ROUTING': 2, 'CS_SOFT_EXECUTE': 3, 'CS_EXECUTE': 4,
              'CS_EXCHANGE_MEDIA': 5, 'CS_PARK': 6, 'CS_CONSUME_MEDIA': 7, 'CS_HIBERNATE': 8,
              'CS_RESET': 9, 'CS_HANGUP': 10, 'CS_REPORTING': 11, 'CS_DESTROY': 12}
CALL_STATE_NUMBERS = {'DOWN': 0, 'DIALING': 1, 'RINGING': 2, 'EARLY': 3, 'ACTIVE': 4, 'HELD': 5,
                      'RING_WAIT': 6, 'HANGUP': 7, 'UNHELD': 8}
Q850 = {
    'UNALLOCATED_NUMBER': 1, 'NO_ROUTE_TRANSIT_NET': 2, 'NO_ROUTE_DESTINATION': 3,
    'CHANNEL_UNACCEPTABLE': 6, 'NORMAL_CLEARING': 16, 'USER_BUSY': 17, 'NO_USER_RESPONSE': 18,
    'NO_ANSWER': 19, 'SUBSCRIBER_ABSENT': 20, 'CALL_REJECTED': 21, 'NUMBER_CHANGED': 22,
    'REDIRECTION_TO_NEW_DESTINATION': 23, 'DESTINATION_OUT_OF_ORDER': 27, 'INVALID_NUMBER_FORMAT': 28,
    'FACILITY_REJECTED': 29, 'NORMAL_UNSPECIFIED': 31, 'NORMAL_CIRCUIT_CONGESTION': 34,
    'NETWORK_OUT_OF_ORDER': 38, 'NORMAL_TEMPORARY_FAILURE': 41, 'SWITCH_CONGESTION': 42,
    'REQUESTED_CHAN_UNAVAIL': 44, 'SERVICE_UNAVAILABLE': 63, 'INCOMPATIBLE_DESTINATION': 88,
    'RECOVERY_ON_TIMER_EXPIRE': 102, 'INTERWORKING': 127,
    # FreeSWITCH's own causes (switch_types.h switch_call_cause_t): not Q.850; hangup_cause_q850
    # reports them as 16 (switch_channel_cause_q850: above INTERWORKING -> NORMAL_CLEARING)
    'ORIGINATOR_CANCEL': 487, 'SYSTEM_SHUTDOWN': 701, 'LOSE_RACE': 702, 'MANAGER_REQUEST': 703,
    'ALLOTTED_TIMEOUT': 802,
}
HANGUP_CAUSES = set(Q850) | {
    'NONE', 'CALL_AWARDED_DELIVERED', 'EXCHANGE_ROUTING_ERROR', 'RESPONSE_TO_STATUS_ENQUIRY',
    'ACCESS_INFO_DISCARDED', 'PRE_EMPTED', 'FACILITY_NOT_SUBSCRIBED', 'OUTGOING_CALL_BARRED',
    'INCOMING_CALL_BARRED', 'BEARERCAPABILITY_NOTAUTH', 'BEARERCAPABILITY_NOTAVAIL',
    'BEARERCAPABILITY_NOTIMPL', 'CHAN_NOT_IMPLEMENTED', 'FACILITY_NOT_IMPLEMENTED',
    'SERVICE_NOT_IMPLEMENTED', 'INVALID_CALL_REFERENCE', 'INVALID_MSG_UNSPECIFIED',
    'MANDATORY_IE_MISSING', 'MESSAGE_TYPE_NONEXIST', 'WRONG_MESSAGE', 'IE_NONEXIST',
    'INVALID_IE_CONTENTS', 'WRONG_CALL_STATE', 'MANDATORY_IE_LENGTH_ERROR', 'PROTOCOL_ERROR',
    'SUCCESS', 'CRASH', 'BLIND_TRANSFER', 'ATTENDED_TRANSFER', 'USER_CHALLENGE', 'MEDIA_TIMEOUT',
    'PICKED_OFF', 'USER_NOT_REGISTERED', 'PROGRESS_TIMEOUT', 'INVALID_GATEWAY', 'GATEWAY_DOWN',
    'INVALID_URL', 'INVALID_PROFILE', 'NO_PICKUP', 'SRTP_READ_ERROR', 'BOWOUT', 'BUSY_EVERYWHERE',
    'DECLINE', 'DOES_NOT_EXIST_ANYWHERE', 'NOT_ACCEPTABLE', 'UNWANTED', 'NO_IDENTITY',
    'BAD_IDENTITY_INFO', 'UNSUPPORTED_CERTIFICATE', 'INVALID_IDENTITY'}

_VAR_RE = re.compile(r'\$\{([^{}]+)\}')


def silence_divisor(value) -> int | None:
    """`send_silence_when_idle` as the apps read it: None (write nothing) for 0 or no number;
    SWITCH_IVR_VERIFY_SILENCE_DIVISOR makes other values below 1 (but -1) 400."""
    n = atoi(value)
    if n == 0:
        return None
    if n <= 0 and n != -1:
        return 400
    return n


def normalize_cause(cause: str | None) -> str:
    """Map a cause name (or Q.850 number) to a FreeSWITCH cause name; unknown -> NORMAL_CLEARING."""
    if not cause:
        return 'NORMAL_CLEARING'
    cause = cause.strip().upper()
    if cause.isdigit():
        for name, code in Q850.items():
            if code == int(cause):
                return name
        return 'NORMAL_CLEARING'
    return cause if cause in HANGUP_CAUSES else 'NORMAL_CLEARING'


class Message:
    """A private event queued to the channel by sendmsg (headers lower-cased keys, order kept)."""

    def __init__(self, headers: list[tuple[str, str]], body: str | None = None, raw: str = ''):
        self.headers = headers
        self.body = body
        self.raw = raw

    def get(self, name: str, default=None):
        return header_value(self.headers, name, default)


class Channel:
    """A simulated channel. See the module docstring; the public surface is what switch_sim apps,
    APIs, ESL listeners and the audio-fork emulation use."""

    read_rate = 8000

    def __init__(self, sim, *, uuid: str | None = None, direction: str = 'inbound',
                 caller_number: str = '', caller_name: str = '', destination: str = '',
                 variables: dict | None = None, caller=None, name: str | None = None,
                 dialplan: list[tuple[str, str]] | None = None, context: str = 'public'):
        self.sim = sim
        self.uuid = uuid or str(uuid_mod.uuid4())
        self.direction = direction
        self.caller_number = caller_number
        self.caller_name = caller_name
        self.destination = destination
        self.context = context
        self.name = name or ('sofia/sim/%s@127.0.0.1' % (destination if direction == 'outbound'
                                                           else caller_number or 'anonymous'))
        self.caller = caller
        self.dialplan = list(dialplan or [])
        self.variables: dict[str, str] = {}
        self.temp_dir = tempfile.gettempdir()
        self.media_bugs: dict[str, object] = {}
        self.write_injectors: list = []
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
        self._created_mono = time.monotonic()

        # media
        self.write_source = None
        self.silence_writer = None    # the running app writes this silence when it has nothing else (divisor)
        self.read_taps: list = []     # callables(frame | None) of apps that read frames themselves
        self._break = False
        self._tick_event = GEvent()
        self._media_greenlet = None
        self._session_greenlet = None
        self._frames = 0

        # queues
        self.dtmf_queue: collections.deque = collections.deque()
        self.digits_dialed = ''
        self.messages: collections.deque = collections.deque()
        self._hangup_callbacks: list = []
        self._transfer: list[tuple[str, str]] | None = None
        self._lock_stack: list[bool] = []   # event-lock flag of each message being run (nesting)
        self._current_app = None      # (name, arg, app_uuid) of the running app
        self.last_app = None
        self.last_arg = None

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
            ('Direction', self.direction), ('Logical-Direction', self.direction), ('Dialplan', 'XML'),
            ('Caller-ID-Name', self.caller_name), ('Caller-ID-Number', self.caller_number),
            ('Orig-Caller-ID-Name', ''), ('Orig-Caller-ID-Number', ''),
            ('Callee-ID-Name', ''), ('Callee-ID-Number', ''),
            ('ANI', self.caller_number), ('Destination-Number', self.destination),
            ('Unique-ID', self.uuid), ('Source', 'mod_sofia'), ('Context', self.context),
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

    # ------------------------------------------------------------------ media bugs / injectors
    def add_media_bug(self, bug) -> None:
        """Attach a media bug (`.name`, `on_media(read, write)`, `on_close()`); fires MEDIA_BUG_START."""
        if bug.name in self.media_bugs:
            raise ValueError('media bug %r already attached' % bug.name)
        self.media_bugs[bug.name] = bug
        init = getattr(bug, 'on_init', None)
        if init:
            init()
        self.fire_event('MEDIA_BUG_START', pre_headers=[
            ('Media-Bug-Function', getattr(bug, 'function', bug.name)),
            ('Media-Bug-Target', getattr(bug, 'target', ''))])

    def remove_media_bug(self, bug) -> None:
        """Detach a bug (its on_close is called once, then MEDIA_BUG_STOP fires)."""
        if self.media_bugs.get(bug.name) is not bug:
            return
        del self.media_bugs[bug.name]
        self._close_bug(bug)

    def _close_bug(self, bug) -> None:
        try:
            bug.on_close()
        except Exception:
            log.exception('[%s] media bug %s on_close failed', self.uuid, bug.name)
        self.fire_event('MEDIA_BUG_STOP', pre_headers=[
            ('Media-Bug-Function', getattr(bug, 'function', bug.name)),
            ('Media-Bug-Target', getattr(bug, 'target', ''))])

    def add_write_injector(self, inj) -> None:
        if inj not in self.write_injectors:
            self.write_injectors.append(inj)

    def remove_write_injector(self, inj) -> None:
        if inj in self.write_injectors:
            self.write_injectors.remove(inj)

    def break_playback(self, all_files: bool = False) -> None:
        """CF_BREAK: the running playback/speak/record/sleep stops (Playback-Status: break)."""
        self._break = True
        if all_files:
            self.messages.clear()

    def take_break(self) -> bool:
        if self._break:
            self._break = False
            return True
        return False

    # ------------------------------------------------------------------ DTMF
    def queue_dtmf(self, digit: str, duration: int = 2000, source: str = 'RTP') -> None:
        """A digit arrives from the caller (it is only reported when something dequeues it)."""
        if self.hungup:
            return
        self.dtmf_queue.append((digit, duration, source))

    def has_dtmf(self) -> bool:
        return bool(self.dtmf_queue)

    def dequeue_dtmf(self):
        """Take one digit, firing the DTMF event (no variables). Returns the digit or None."""
        if not self.dtmf_queue:
            return None
        digit, duration, source = self.dtmf_queue.popleft()
        self.digits_dialed += digit
        self.fire_event('DTMF', [('DTMF-Digit', digit), ('DTMF-Duration', str(duration)),
                                 ('DTMF-Source', source)], with_variables=False)
        return digit

    # ------------------------------------------------------------------ media clock
    def wait_frame(self, timeout: float = 1.0) -> bool:
        """Block until the next 20 ms tick. False once the channel is hung up."""
        if self.hungup:
            return False
        self._tick_event.wait(timeout)
        return not self.hungup

    def wait_frames(self, count: int) -> bool:
        """Block for `count` ticks (False as soon as the channel is hung up)."""
        for _ in range(count):
            if not self.wait_frame():
                return False
        return True

    def _media_loop(self) -> None:
        deadline = time.monotonic()
        try:
            while not self.hungup:
                deadline += FRAME_SECONDS
                delay = deadline - time.monotonic()
                if delay > 0:
                    gevent.sleep(delay)
                elif delay < -1.0:       # far behind (suspended?): resync instead of bursting
                    deadline = time.monotonic()
                    gevent.sleep(0)
                else:
                    gevent.sleep(0)
                if self.hungup:
                    break
                try:
                    self._tick()
                except Exception:
                    log.exception('[%s] media tick failed', self.uuid)
                ev = self._tick_event
                self._tick_event = GEvent()
                ev.set()
        finally:
            ev = self._tick_event
            self._tick_event = GEvent()
            ev.set()

    def _tick(self) -> None:
        self._frames += 1
        caller = self.caller
        if self.answered or self.early_media:
            read = caller.read_frame() if caller is not None else _ZERO_FRAME
            self._read(read)
        write = self._written_frame()
        if write is not None and self.media_bugs:
            write = self._write_through_bugs(write)
        heard = write
        if self.write_injectors:
            acc = (write if write is not None else _ZERO_FRAME).astype(np.int32)
            for inj in list(self.write_injectors):
                try:
                    data = inj.pull(FRAME_BYTES)
                except Exception:
                    log.exception('[%s] write injector failed', self.uuid)
                    data = None
                if data:
                    extra = np.frombuffer(data[:FRAME_BYTES], dtype='<i2')
                    acc[:len(extra)] += extra
            heard = np.clip(acc, -32768, 32767).astype(np.int16)
        if caller is not None:
            caller.tick(self, heard if heard is not None else _ZERO_FRAME, time.monotonic() - self._created_mono)

    def _read(self, read) -> None:
        """One read frame (None = CNG) to the read taps, the read-stream bugs, then READ_PING bugs."""
        for tap in list(self.read_taps):
            try:
                tap(read)
            except Exception:
                log.exception('[%s] read tap failed', self.uuid)
        if not self.media_bugs:
            return
        data = CNG_FILL if read is None else read.tobytes()
        bugs = list(self.media_bugs.values())
        for bug in bugs:
            if getattr(bug, 'reads_stream', False):
                try:
                    bug.on_read(data)
                except Exception:
                    log.exception('[%s] media bug %s failed', self.uuid, getattr(bug, 'name', bug))
        for bug in bugs:
            if getattr(bug, 'read_ping', False):
                try:
                    bug.on_read_ping()
                except Exception:
                    log.exception('[%s] media bug %s failed', self.uuid, getattr(bug, 'name', bug))

    def _written_frame(self):
        """The frame the running app writes this tick, or None when it writes nothing."""
        src = self.write_source
        if src is not None:
            return src.read(FRAME_SAMPLES)
        if self.silence_writer:
            return sln_silence(FRAME_SAMPLES, self.silence_writer, self._frames * FRAME_SAMPLES)
        return None

    def _write_through_bugs(self, frame):
        """The bugs in attach order: a WRITE_STREAM bug copies the frame as it is at its turn, a
        WRITE_REPLACE bug changes it for the bugs after it and for the caller."""
        for bug in list(self.media_bugs.values()):
            try:
                if getattr(bug, 'writes_stream', False):
                    bug.on_write(frame.tobytes())
                if getattr(bug, 'write_replace', False):
                    frame = bug.replace_write(frame)
            except Exception:
                log.exception('[%s] media bug %s failed', self.uuid, getattr(bug, 'name', bug))
        return frame

    # ------------------------------------------------------------------ messages (sendmsg)
    def queue_message(self, msg: Message) -> None:
        self.messages.append(msg)

    def run_next_message(self) -> bool:
        """Dequeue and run one private message. True if one ran."""
        if not self.messages or self.hungup:
            return False
        msg = self.messages.popleft()
        command = (msg.get('call-command') or '').lower()
        if command == 'execute':
            app = msg.get('execute-app-name') or ''
            arg = msg.get('execute-app-arg') or ''
            if not arg and msg.body and (msg.get('content-type') or '').lower() == 'text/plain':
                arg = msg.body
            try:
                loops = int(msg.get('loops') or 1)
            except ValueError:
                loops = 1
            lock = (msg.get('event-lock') or '').lower() == 'true' or \
                (msg.get('event-lock-pri') or '').lower() == 'true'
            loop = 0
            self._lock_stack.append(lock)
            try:
                while not self.hungup and (loops < 0 or loop < loops):
                    loop += 1
                    self.set_variable('current_loop', str(loop))
                    self.set_variable('total_loops', str(loops))
                    started = time.monotonic()
                    self.execute(app, arg, app_uuid=msg.get('event-uuid'),
                                 app_uuid_name=msg.get('event-uuid-name'))
                    if loops != 1 and time.monotonic() - started < 0.5:
                        break
            finally:
                self._lock_stack.pop()
            if not lock:
                self.fire_event('PRIVATE_COMMAND', with_variables=False,
                                prefix_headers=[('Command', msg.raw)] + list(msg.headers))
            self.set_variable('current_loop', None)
            self.set_variable('total_loops', None)
        elif command == 'hangup':
            self.hangup(msg.get('hangup-cause') or 'NORMAL_CLEARING')
        elif command in ('unicast', 'nomedia', 'xferext'):
            log.error('[%s] sendmsg call-command %s is not implemented by the simulator', self.uuid, command)
        else:
            log.error('[%s] sendmsg: unknown call-command %r', self.uuid, command)
        return True

    def service_messages(self) -> None:
        """switch_ivr_parse_all_events, called by media apps on every frame: queued messages run
        NESTED inside the running app, unless the message being run holds the event lock
        (CF_EVENT_LOCK), in which case they wait their turn."""
        while self.messages and not self.hungup and self._transfer is None \
                and not (self._lock_stack and self._lock_stack[-1]):
            self.run_next_message()

    # ------------------------------------------------------------------ apps
    def execute(self, app: str, arg: str = '', app_uuid: str | None = None, app_uuid_name: str | None = None):
        """switch_core_session_execute_application: EXECUTE, run, EXECUTE_COMPLETE.

        Unknown app: hang up with DESTINATION_OUT_OF_ORDER, no events. After hangup: ignored."""
        from .apps import APPS, AppError
        if self.hungup:
            log.info('[%s] app %s after hangup ignored', self.uuid, app)
            return None
        func = APPS.get(app)
        if func is None:
            log.error('[%s] Invalid Application %s', self.uuid, app)
            self.hangup('DESTINATION_OUT_OF_ORDER')
            return None
        data = self.expand(arg or '')
        app_uuid = app_uuid or str(uuid_mod.uuid4())
        self.set_variable('current_application_data', data)
        self.set_variable('current_application', app)
        self.set_variable('current_application_response', None)
        head = [('Application', app)]
        if data:
            head.append(('Application-Data', data))
        tail = [('Application-UUID', app_uuid)]
        if app_uuid_name:
            tail.append(('Application-UUID-Name', app_uuid_name))
        self.fire_event('CHANNEL_EXECUTE', head + tail)
        previous = self._current_app
        self._current_app = (app, data, app_uuid)
        self.last_app, self.last_arg = app, data     # the app log's last entry = the last app started
        # what writes frames is the running app: an outer one (park, a playback running this one
        # nested) writes nothing until this one returns; CF_BREAK is cleared as each app starts
        writer = (self.write_source, self.silence_writer)
        self.write_source = self.silence_writer = None
        self._break = False
        try:
            func(self, data)
        except AppError as exc:
            log.error('[%s] %s(%s): %s', self.uuid, app, data, exc)
        except Exception:
            log.exception('[%s] app %s crashed', self.uuid, app)
        finally:
            self._current_app = previous
            if not self.hungup:
                self.write_source, self.silence_writer = writer
        response = self.variables.get('current_application_response') or '_none_'
        self.fire_event('CHANNEL_EXECUTE_COMPLETE', head + [('Application-Response', response)] + tail)
        return response

    def park(self, until=None) -> None:
        """switch_ivr_park: fire CHANNEL_PARK, then run queued messages on each tick until hangup
        (or `until()` turns true); digits pressed meanwhile are dequeued (DTMF events)."""
        self.parked = True
        self.fire_event('CHANNEL_PARK')
        media_checked = False
        try:
            while not self.hungup and self._transfer is None:
                if until is not None and until():
                    break
                if not media_checked and (self.answered or self.early_media):
                    # switch_ivr_park: the variable is read once, the first time media is ready
                    media_checked = True
                    self.silence_writer = silence_divisor(self.get_variable('send_silence_when_idle'))
                if not self.wait_frame():
                    break
                self._break = False
                if self.dtmf_queue:
                    self.dequeue_dtmf()
                while self.messages and not self.hungup and self._transfer is None:
                    self.run_next_message()
                    if until is not None and until():
                        break
        finally:
            self.parked = False
            self.silence_writer = None
            self.fire_event('CHANNEL_UNPARK')

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
            self.ready.set()
            pending = list(self.dialplan)
            while pending and not self.hungup:
                app, arg = pending.pop(0)
                self.execute(app, arg)
                if self._transfer is not None:
                    pending, self._transfer = list(self._transfer), None
        except Exception:
            log.exception('[%s] session failed', self.uuid)
        finally:
            self.ready.set()
            if not self.hungup:
                self.hangup('NORMAL_CLEARING')
            try:
                self._teardown()
            except Exception:
                log.exception('[%s] teardown failed', self.uuid)

    def transfer(self, apps: list[tuple[str, str]]) -> None:
        """uuid_transfer: stop what runs (and the queued messages), then run `apps` as the new dialplan."""
        if self.hungup:
            return
        self._transfer = list(apps)
        self.messages.clear()
        self.break_playback()

    def transfer_pending(self) -> bool:
        return self._transfer is not None

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
        ev = self._tick_event
        self._tick_event = GEvent()
        ev.set()
        if self._session_greenlet is None:
            gevent.spawn(self._teardown)

    def _teardown(self) -> None:
        if self.gone.is_set():
            return
        self._set_running_state('CS_HANGUP')
        self._set_call_state('HANGUP')
        for bug in list(self.media_bugs.values()):
            self.media_bugs.pop(bug.name, None)
            self._close_bug(bug)
        self.write_injectors = []
        self._set_running_state('CS_REPORTING')
        self._set_cdr_variables()
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

    def _set_cdr_variables(self) -> None:
        end_us = int(time.time() * 1_000_000)
        start_us = self.created_us
        answer_us = self.answered_us
        pm_us = self.progress_media_us
        pr_us = self.progress_us

        def stamp(us):
            return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(us / 1e6))

        sv = self.set_variable
        sv('hangup_cause', self.hangup_cause)
        code = Q850.get(self.hangup_cause, 0)
        sv('hangup_cause_q850', str(code if code <= 127 else 16))
        sv('digits_dialed', self.digits_dialed or 'none')
        sv('start_stamp', stamp(start_us))
        sv('profile_start_stamp', stamp(start_us))
        if answer_us:
            sv('answer_stamp', stamp(answer_us))
        if pm_us:
            sv('progress_media_stamp', stamp(pm_us))
        sv('end_stamp', stamp(end_us))
        for key, us in (('start', start_us), ('profile_start', start_us), ('answer', answer_us),
                        ('bridge', 0), ('last_hold', 0)):
            sv(key + '_epoch', str(us // 1_000_000))
            sv(key + '_uepoch', str(us))
        sv('hold_accum_seconds', '0')
        sv('hold_accum_usec', '0')
        sv('hold_accum_ms', '0')
        for key, us in (('resurrect', 0), ('progress', pr_us), ('progress_media', pm_us), ('end', end_us)):
            sv(key + '_epoch', str(us // 1_000_000))
            sv(key + '_uepoch', str(us))
        if self.last_app:
            sv('last_app', self.last_app)
            sv('last_arg', self.last_arg)
        sv('caller_id', '"%s" <%s>' % (self.caller_name, self.caller_number))
        billusec = end_us - answer_us if answer_us else 0
        uduration = end_us - start_us
        progressusec = pr_us - start_us if pr_us else 0
        answerusec = answer_us - start_us if answer_us else 0
        pmusec = pm_us - start_us if pm_us else 0
        waitusec = answerusec
        sv('duration', str(uduration // 1_000_000))
        sv('billsec', str(billusec // 1_000_000))
        sv('progresssec', str(progressusec // 1_000_000))
        sv('answersec', str(answerusec // 1_000_000))
        sv('waitsec', str(waitusec // 1_000_000))
        sv('progress_mediasec', str(pmusec // 1_000_000))
        sv('flow_billsec', str(uduration // 1_000_000))
        sv('mduration', str(uduration // 1000))
        sv('billmsec', str(billusec // 1000))
        sv('progressmsec', str(progressusec // 1000))
        sv('answermsec', str(answerusec // 1000))
        sv('waitmsec', str(waitusec // 1000))
        sv('progress_mediamsec', str(pmusec // 1000))
        sv('flow_billmsec', str(uduration // 1000))
        sv('uduration', str(uduration))
        sv('billusec', str(billusec))
        sv('progressusec', str(progressusec))
        sv('answerusec', str(answerusec))
        sv('waitusec', str(waitusec))
        sv('progress_mediausec', str(pmusec))
        sv('flow_billusec', str(uduration))

    @property
    def duration_s(self) -> float:
        end = self.hangup_us or int(time.time() * 1_000_000)
        return (end - self.created_us) / 1e6
