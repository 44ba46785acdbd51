"""The inbound event socket (what FreeSWITCH listens on at 8021): auth, then the common commands.

Owns: the gevent StreamServer, the `auth/request` greeting, `auth <password>` (`+OK accepted`, or
`-ERR invalid` + the goodbye notice + close), the pre-auth rule (only auth, userauth, exit and `...`;
anything else `-ERR command not found`), and inbound-only commands (`myevents <uuid> [format]`,
`divert_events`/`getvar`/`resume`/`linger` answered as FreeSWITCH does outside a session).
"""
from __future__ import annotations

import logging

from gevent.server import StreamServer

from .listener import ConnectionClosed, ESLConnection

log = logging.getLogger('switch_sim.esl_server')


class InboundConnection(ESLConnection):
    def __init__(self, sim, sock, password: str):
        super().__init__(sim, sock)
        self.password = password
        self.authed = False

    def run(self) -> None:
        self.sim.add_listener(self)
        self.send(b'Content-Type: auth/request\n\n')
        try:
            while not self.closed and not self.closed_for_events:
                packet = self.read_packet(timeout=None)
                if not packet.command:
                    continue
                if not self.process(packet):
                    break
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.close()
            self._writer.join(timeout=10)   # StreamServer closes the socket when we return

    def handle(self, packet) -> bool:
        cmd, _, args = packet.command.partition(' ')
        lcmd = cmd.lower()
        if not self.authed:
            if lcmd == 'auth':
                if args.strip() == self.password:
                    self.authed = True
                    self.reply('+OK accepted')
                    return True
                self.reply('-ERR invalid')
                self.goodbye()
                return False
            if lcmd in ('exit', '...'):
                return super().handle(packet)
            if lcmd == 'userauth':
                self.reply('-ERR userauth is not implemented by the simulator')
                return True
            self.reply('-ERR command not found')
            return True
        return super().handle(packet)

    def handle_extra(self, cmd, args, packet) -> bool:
        if cmd == 'myevents':
            parts = args.split()
            if not parts:
                self.reply('-ERR invalid syntax')
                return True
            if self.myevents_uuid:
                self.reply('-ERR aready enabled.')
                return True
            self.myevents_uuid = parts[0]
            if len(parts) > 1 and parts[1].lower() in ('plain', 'json'):
                self.fmt = parts[1].lower()
            from .outbound import MYEVENTS
            self.event_names.update(MYEVENTS)
            self.reply('+OK Events Enabled')
            return True
        if cmd in ('linger', 'nolinger', 'divert_events', 'resume'):
            self.reply('-ERR not controlling a session.' if cmd == 'divert_events'
                       else '-ERR not controlling a session')
            return True
        if cmd == 'getvar':
            self.reply('-ERR not controlling a session')
            return True
        if cmd == 'sendmsg':
            return self.sim.handle_sendmsg(self, args.strip() or packet.get('session-id'), packet)
        return False


class InboundServer:
    def __init__(self, sim, listen=('127.0.0.1', 8021), password='ClueCon'):
        self.sim = sim
        self.password = password
        self.server = StreamServer(listen, self._handle)

    def _handle(self, sock, addr):
        InboundConnection(self.sim, sock, self.password).run()

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop(timeout=1)

    @property
    def address(self):
        return self.server.address
