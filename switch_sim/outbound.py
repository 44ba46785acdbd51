"""Outbound event socket: the `socket` dialplan app and the connection it makes (one per call).

Owns: connecting to `host:port[/path] [async] [full]` (`socket_host`/`socket_path` vars), the 25 s
window for the first command, `connect` as the only command whose reply is written while not yet
connected (the reply of any other first command is dropped), the connect reply (a CHANNEL_DATA event
serialized without outer framing, ending with Content-Type: command/reply, `Reply-Text: %2BOK%0A`,
Socket-Mode, Control), session commands (`myevents`, `linger [N]`, `nolinger`, `divert_events`,
`getvar`, `resume`, `sendmsg`; `api`/`bgapi`/`event`/`nixevent`/`noevents`/`linger`/`nolinger` only
with `full`), the park loop that runs queued messages, and the end of the call:
* no linger: the final notice goes out right after CHANNEL_HANGUP; later events are lost;
* linger: the linger notice after CHANNEL_HANGUP_COMPLETE, events keep flowing until `exit`, the
  client closing, or the linger time (then the final notice and close).

Approximated: in sync mode (no `async`), sendmsg runs the app inside the connection greenlet and
replies when it is done (as FreeSWITCH does), but the channel is not parked meanwhile; a transfer
(uuid_transfer) ends the socket app and the connection gets the final notice.
"""
from __future__ import annotations

import logging
import socket

import gevent
from gevent.event import Event as GEvent

from .apps import APPS, AppError
from .channel_exec import Message
from .listener import ConnectionClosed, ESLConnection

log = logging.getLogger('switch_sim.outbound')

FIRST_COMMAND_TIMEOUT = 25.0
CONNECT_TIMEOUT = 5.0
MYEVENTS = ('CHANNEL_ANSWER', 'CHANNEL_APPLICATION', 'CHANNEL_BRIDGE', 'CHANNEL_CREATE', 'CHANNEL_DATA',
            'CHANNEL_DESTROY', 'CHANNEL_EXECUTE', 'CHANNEL_EXECUTE_COMPLETE', 'CHANNEL_HANGUP',
            'CHANNEL_HANGUP_COMPLETE', 'CHANNEL_ORIGINATE', 'CHANNEL_UUID', 'CHANNEL_OUTGOING',
            'CHANNEL_PARK', 'CHANNEL_PROGRESS', 'CHANNEL_PROGRESS_MEDIA', 'CHANNEL_STATE',
            'CHANNEL_UNBRIDGE', 'CHANNEL_UNPARK', 'DETECTED_SPEECH', 'DTMF', 'NOTALK', 'TALK')
FULL_ONLY = {'api', 'bgapi', 'event', 'nixevent', 'noevents', 'linger', 'nolinger', 'log', 'nolog',
             'sendevent'}


def message_from_packet(packet) -> Message:
    headers = [(k, v) for k, v in packet.headers]
    return Message(headers, packet.body, packet.raw)


class OutboundSession(ESLConnection):
    def __init__(self, sim, sock, channel, async_mode: bool, full: bool):
        super().__init__(sim, sock)
        self.channel = channel
        self.async_mode = async_mode
        self.full = full
        self.connected = GEvent()
        self.settled = GEvent()        # the first command after `connect` was handled
        self.linger: int | None = None  # None: no linger; -1: forever; N seconds
        self.resume = False
        self.first_command_timeout = getattr(sim, 'first_command_timeout', FIRST_COMMAND_TIMEOUT)

    def owner_uuid(self):
        return self.channel.uuid

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        self.sim.add_listener(self)
        self.channel.on_hangup(self._on_channel_hangup)
        try:
            try:
                packet = self.read_packet(timeout=self.first_command_timeout)
            except socket.timeout:
                log.error('[%s] Socket Error! no command within %ss', self.channel.uuid,
                          self.first_command_timeout)
                return
            if packet.command.lower() == 'connect':
                self.send(self.connect_reply())
                self.connected.set()
            else:
                # the reply of a first command other than `connect` is never written
                self._busy = True
                real_send, self.send = self.send, (lambda data: None)
                try:
                    self.handle(packet)
                finally:
                    self.send = real_send
                    self._busy = False
            while not self.closed and not self.closed_for_events:
                packet = self.read_packet(timeout=None)
                if not packet.command:
                    continue
                keep = self.process(packet)
                if self.connected.is_set():
                    self.settled.set()
                if not keep:
                    break
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.close()
            self.settled.set()

    def connect_reply(self) -> bytes:
        ch = self.channel
        ev = ch.build_event('CHANNEL_DATA', extra_headers=[
            ('Content-Type', 'command/reply'), ('Reply-Text', '+OK\n'),
            ('Socket-Mode', 'async' if self.async_mode else 'static'),
            ('Control', 'full' if self.full else 'single-channel')],
            pre_headers=ch.profile_headers('Channel'))
        return ev.serialize_plain().encode('utf-8')

    def _on_channel_hangup(self, ch) -> None:
        if self.linger is None and not self.closed:
            # flush what is queued (CHANNEL_HANGUP included), then the final notice; later events lost
            self.goodbye()

    def channel_gone(self) -> None:
        """Called after CHANNEL_HANGUP_COMPLETE was fired."""
        if self.closed or self.closed_for_events or self.linger is None:
            return
        ch = self.channel
        self.send(('Content-Type: text/disconnect-notice\nControlled-Session-UUID: %s\n'
                   'Content-Disposition: linger\nChannel-Name: %s\nLinger-Time: %d\nContent-Length: 0\n\n'
                   % (ch.uuid, ch.name, self.linger)).encode('utf-8'))
        if self.linger >= 0:
            gevent.spawn_later(self.linger, self._linger_expired)

    def _linger_expired(self) -> None:
        if not self.closed and not self.closed_for_events:
            self.goodbye()

    def goodbye(self, controlled_uuid=None) -> None:
        super().goodbye(self.channel.uuid)

    # ------------------------------------------------------------------ commands
    def handle(self, packet) -> bool:
        cmd = packet.command.partition(' ')[0].lower()
        if cmd in FULL_ONLY and not self.full:
            self.reply('-ERR command not found')
            return True
        return super().handle(packet)

    def handle_extra(self, cmd, args, packet) -> bool:
        ch = self.channel
        if cmd == 'connect':
            self.send(self.connect_reply())
            self.connected.set()
            return True
        if cmd == 'myevents':
            if self.myevents_uuid:
                self.reply('-ERR aready enabled.')
                return True
            for tok in args.split():
                if tok.lower() in ('plain', 'json'):
                    self.fmt = tok.lower()
            self.myevents_uuid = ch.uuid
            self.event_names.update(MYEVENTS)
            self.reply('+OK Events Enabled')
            return True
        if cmd == 'linger':
            secs = args.strip()
            if secs:
                try:
                    self.linger = int(secs)
                except ValueError:
                    self.linger = -1
                if self.linger > 0:
                    self.reply('+OK will linger %d seconds' % self.linger)
                else:
                    self.linger = -1
                    self.reply('+OK will linger')
            else:
                self.linger = -1
                self.reply('+OK will linger')
            return True
        if cmd == 'nolinger':
            self.linger = None
            self.reply('+OK will not linger')
            return True
        if cmd == 'divert_events':
            on = args.strip().lower() == 'on'
            ch.divert_events = on
            self.reply('+OK events diverted' if on else '+OK events not diverted')
            return True
        if cmd == 'getvar':
            self.reply(ch.get_variable(args.strip(), '') or '')
            return True
        if cmd == 'resume':
            self.resume = True
            ch.set_variable('socket_resume', 'true')
            self.reply('+OK')
            return True
        if cmd == 'sendmsg':
            target = args.strip() or packet.get('session-id')
            if target and target != ch.uuid:
                return self.sim.handle_sendmsg(self, target, packet)
            msg = message_from_packet(packet)
            if self.async_mode or (packet.get('async') or '').lower() == 'true':
                ch.queue_message(msg)
                self.reply('+OK')
            else:
                ch.queue_message(msg)
                ch.run_next_message()
                self.reply('+OK')
            return True
        return False


def _parse_socket_arg(data: str):
    parts = data.split()
    if not parts:
        raise AppError('socket: no target')
    target = parts[0].split('|')[0]
    flags = {p.lower() for p in parts[1:]}
    path = None
    if '/' in target:
        target, _, path = target.partition('/')
    host, _, port = target.rpartition(':')
    if not host:
        host, port = port, '8084'
    try:
        port_num = int(port or 8084)
    except ValueError:
        raise AppError('socket: bad port %r' % port)
    return host, port_num, path, 'async' in flags, 'full' in flags


def app_socket(ch, data: str) -> None:
    """The `socket` dialplan app."""
    host, port, path, async_mode, full = _parse_socket_arg(data)
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        log.error('[%s] Socket Error! cannot connect to %s:%d: %s', ch.uuid, host, port, exc)
        return
    sock.settimeout(None)
    # mod_event_socket's socket_function sets TCP_NODELAY before connecting: replies to pipelined
    # commands must not wait for Nagle + the peer's delayed ACK (~40 ms)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ch.set_variable('socket_host', host)
    if path:
        ch.set_variable('socket_path', path)
    session = OutboundSession(ch.sim, sock, ch, async_mode, full)
    previous = ch.controller
    ch.controller = session
    gevent.spawn(session.run)
    # FreeSWITCH waits (as long as the channel is up) until the listener is connected or gone
    while not (session.connected.is_set() or session.released.is_set() or ch.hungup):
        gevent.wait([session.connected, session.released], count=1, timeout=0.5)
    if not session.connected.is_set():
        session.close()
        ch.controller = previous
        return
    if async_mode:
        session.settled.wait(0.2)
        ch.park(until=lambda: session.released.is_set() or ch.transfer_pending())
    else:
        while not ch.hungup and not session.released.is_set() and not ch.transfer_pending():
            ch.wait_frame()
            if ch.has_dtmf():
                ch.dequeue_dtmf()
    if ch.transfer_pending() and not session.closed:
        session.goodbye()


APPS['socket'] = app_socket
