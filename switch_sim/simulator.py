"""The simulated FreeSWITCH: registry of channels and ESL listeners, API table, event delivery.

Owns: the inbound ESL server, the channel registry (`get_channel`), every connected ESL listener
(`deliver` offers each fired event to each listener; a diverted DTMF goes only to the controlling
socket), the API table (`register_api(name, handler)`, `run_api`, `run_background_job` ->
BACKGROUND_JOB), the dialplan (every destination routes to `socket <socket_target> async full`),
placing scripted calls (`place_call`) and originating channels. The mod_audio_fork emulation
registers itself through `switch_sim.audio_fork.register(sim)` at construction.

`fsctl pause inbound` (`paused_inbound`) refuses scripted calls and leaves loopback -b legs
uncreated, as on FreeSWITCH (apis/system.py, tests/fixtures/fs-captures/pause-inbound.json).

Knobs: `socket_flags` (the dialplan's socket flags, default `async full`), `first_command_timeout`
(seconds an outbound socket may stay silent before FreeSWITCH drops it, default 25).
"""
from __future__ import annotations

import logging
import time

import gevent
import uuid as uuid_mod

from . import audio_fork
from . import outbound as _outbound  # noqa: F401  (registers the `socket` app)
from .apis import CORE_APIS
from .caller import CallerModel, CallScript, SimCall
from .channel import Channel
from .esl_server import InboundServer
from .events import EventFactory
from .media import MediaError, MediaLoader

log = logging.getLogger('switch_sim.simulator')

FLAVORS = ('jambonz', 'drachtio')


class Simulator:
    def __init__(self, esl=('127.0.0.1', 0), password: str = 'ClueCon', socket_target=('127.0.0.1', 8084),
                 flavor: str = 'jambonz', media_dir: str | None = None, hostname: str = 'sim',
                 socket_flags: str = 'async full'):
        if flavor not in FLAVORS:
            raise ValueError('flavor must be one of %s' % (FLAVORS,))
        self.flavor = flavor
        self.password = password
        self.socket_target = (socket_target[0], int(socket_target[1]))
        self.socket_flags = socket_flags      # the dialplan's `socket` flags (FreeSWITCH: async full)
        self.events = EventFactory(str(uuid_mod.uuid4()), hostname=hostname)
        self.media = MediaLoader(media_dir, notify=self._file_string_event)
        self.channels: dict[str, Channel] = {}
        self.listeners: list = []
        self.apis: dict = dict(CORE_APIS)
        self.started_at = time.time()
        self.session_count = 0
        self.peak_sessions = 0
        self._task_id = 0
        # `fsctl pause inbound|outbound` (apis/system.py): no new sessions of that direction
        self.paused_inbound = self.paused_outbound = False
        self.first_command_timeout = 25.0     # outbound: seconds FreeSWITCH waits for the first command
        self.inbound = InboundServer(self, esl, password)
        self.audio_fork = audio_fork.register(self)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> 'Simulator':
        self.inbound.start()
        return self

    def stop(self) -> None:
        for ch in list(self.channels.values()):
            ch.hangup('SYSTEM_SHUTDOWN')
        gevent.wait([ch.gone for ch in list(self.channels.values())], timeout=5)
        for listener in list(self.listeners):
            listener.close()
        self.audio_fork.shutdown()
        self.inbound.stop()

    @property
    def esl_address(self):
        return self.inbound.address

    # ------------------------------------------------------------------ registry
    def next_session_id(self) -> int:
        self.session_count += 1
        return self.session_count

    def next_task_id(self) -> int:
        self._task_id += 1
        return self._task_id

    def register_channel(self, ch: Channel) -> None:
        self.channels[ch.uuid] = ch
        self.peak_sessions = max(self.peak_sessions, len(self.channels))

    def channel_gone(self, ch: Channel) -> None:
        self.channels.pop(ch.uuid, None)
        controller = ch.controller
        if controller is not None and hasattr(controller, 'channel_gone'):
            controller.channel_gone()

    def get_channel(self, uuid: str):
        return self.channels.get(uuid)

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def _file_string_event(self, subclass: str, item: str) -> None:
        """mod_dptools' CUSTOM filestring::open / close / fail (no channel headers; `File`: the part)."""
        ev = self.events.new('CUSTOM', subclass=subclass)
        ev.add('File', item)
        self.deliver(ev)

    def deliver(self, ev, divert_to=None) -> None:
        if divert_to is not None:
            divert_to.offer(ev)
            return
        for listener in list(self.listeners):
            listener.offer(ev)

    # ------------------------------------------------------------------ APIs
    def register_api(self, name: str, handler) -> None:
        """handler(sim, args: str) -> str (the api/response body)."""
        self.apis[name] = handler

    def run_api(self, command: str, args: str = '', owner=None) -> str:
        handler = self.apis.get(command)
        if handler is None:
            return '-ERR %s Command not found!\n' % command
        try:
            body = handler(self, args)
        except Exception as exc:
            log.exception('api %s %s failed', command, args)
            return '-ERR %s\n' % exc
        return body or ''

    def run_background_job(self, job_uuid: str, command: str, args: str, owner_uuid: str | None) -> None:
        body = self.run_api(command, args) or '-ERR no reply\n'
        ev = self.events.new('BACKGROUND_JOB')
        ev.add('Job-UUID', job_uuid)
        if owner_uuid:
            ev.add('Job-Owner-UUID', owner_uuid)
        ev.add('Job-Command', command)
        if args:
            ev.add('Job-Command-Arg', args)
        ev.body = body
        self.deliver(ev)

    def handle_sendmsg(self, conn, target_uuid, packet) -> bool:
        """sendmsg <uuid> for another channel (always queued)."""
        from .outbound import message_from_packet
        ch = self.get_channel(target_uuid) if target_uuid else None
        if ch is None:
            conn.reply('-ERR invalid session id [%s]' % (target_uuid or ''))
            return True
        ch.queue_message(message_from_packet(packet))
        conn.reply('+OK')
        return True

    # ------------------------------------------------------------------ calls
    def route(self, destination: str) -> list[tuple[str, str]]:
        """The dialplan: every destination runs `socket <socket_target> <socket_flags>`."""
        host, port = self.socket_target
        return [('socket', ('%s:%d %s' % (host, port, self.socket_flags)).strip())]

    def create_channel(self, *, direction, uuid=None, caller_number='', caller_name='', destination='',
                       variables=None, dialplan=None, name=None, audio=None, answer_first=False,
                       caller=None, context='public', profile=None) -> Channel:
        if caller is None and audio:
            caller = CallerModel(CallScript(to=destination, from_=caller_number),
                                 self.media.load(audio))
        ch = Channel(self, uuid=uuid, direction=direction, caller_number=caller_number, caller_name=caller_name,
                     destination=destination, variables=variables, caller=caller, name=name,
                     dialplan=dialplan if dialplan is not None else self.route(destination),
                     context=context, profile=profile)
        ch.answer_first = answer_first
        ch.start()
        if answer_first:
            ch.ready.wait(5)
        return ch

    def place_call(self, script: CallScript) -> SimCall:
        """An inbound call from the scripted caller to `script.to`; returns at once. ValueError when
        inbound calls are paused (`fsctl pause inbound`): FreeSWITCH answers the INVITE 503 and
        creates no channel (tests/fixtures/fs-captures/pause-inbound.json)."""
        script.validate()
        if self.paused_inbound:
            raise ValueError('503 Maximum Calls In Progress (inbound calls are paused: fsctl pause inbound)')
        try:
            caller = CallerModel.from_script(script)
        except MediaError as exc:
            raise ValueError(str(exc)) from exc
        variables = {'sip_from_user': script.from_, 'sip_to_user': script.to, 'sip_req_user': script.to}
        variables.update(script.variables)
        ch = self.create_channel(direction='inbound', caller_number=script.from_, caller_name=script.caller_name,
                                 destination=script.to, variables=variables, caller=caller)
        return SimCall(ch, caller)
