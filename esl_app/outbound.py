"""`OutboundESLServer`: the TCP server FreeSWITCH's `socket host:port async full` dialplan app
connects to. One connection = one call: a `CallSession` is built, set up (connect, then linger,
myevents, event json ... and uuid_setvar written back to back), handed to `handler(session)` in
that connection's greenlet, and closed (`exit`) when the handler returns. A setup failure is
logged once, with the call UUID, and the socket closed. Runs on gevent's StreamServer (no accept
polling). With `reuse_port` (`callfork serve --workers N`, callfork/workers.py) its socket is
bound with SO_REUSEPORT, so that every worker listens on the same port and the kernel spreads
FreeSWITCH's connections over them (`reuse_port_listener`)."""
import logging
import socket

from gevent.server import StreamServer

from .errors import CallGone, ESLError, ESLTimeout
from .session import CallSession

log = logging.getLogger(__name__)


def reuse_port_listener(address, backlog=1024):
    """A listening TCP socket on `address` (host, port) bound with SO_REUSEPORT (and SO_REUSEADDR):
    other processes of the same user may bind the same port, and the kernel hands each new
    connection to one of their sockets (Linux: by a hash of the connection's addresses)."""
    host, port = address
    family = socket.AF_INET6 if ':' in str(host) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((str(host), int(port)))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class OutboundESLServer:
    def __init__(self, listen=('127.0.0.1', 8084), handler=None, connect_timeout=5.0,
                 command_timeout=10.0, backlog=1024, reuse_port=False):
        if handler is None or not callable(handler):
            raise ValueError('OutboundESLServer needs a handler(session) callable')
        host, port = listen   # (host, port): a config's *_address
        self.listen = (str(host), int(port))
        self.handler = handler
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.sessions = set()
        listener = reuse_port_listener(self.listen, backlog) if reuse_port else self.listen
        self._server = StreamServer(listener, self._handle_connection,
                                    **({} if reuse_port else {'backlog': backlog}))

    @property
    def address(self):
        """(host, port) actually bound (after start())."""
        return self._server.server_host, self._server.server_port

    @property
    def started(self):
        return self._server.started

    def start(self):
        self._server.start()
        log.info('outbound ESL server listening on %s:%s', *self.address)
        return self

    def stop(self, timeout=5.0):
        """Stop accepting, close live call sockets, wait up to `timeout` for their greenlets."""
        self._server.close()
        for session in list(self.sessions):
            session.close()
        self._server.stop(timeout=timeout)

    def _handle_connection(self, sock, peer):
        # commands go out as they are decided (an execute right after an api): no Nagle wait for
        # the switch's delayed ACK; FreeSWITCH sets TCP_NODELAY on its side of this socket too
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = CallSession(sock, peer=peer, command_timeout=self.command_timeout)
        try:
            session.setup(connect_timeout=self.connect_timeout)
        except (CallGone, ESLTimeout, ESLError, OSError) as exc:
            log.warning('outbound ESL connection from %s:%s ended before the call started (uuid %s): %s',
                        peer[0], peer[1], session.uuid, exc)
            session.close(send_exit=False)
            return
        except Exception:
            log.exception('outbound ESL setup failed for %s:%s (uuid %s)', peer[0], peer[1], session.uuid)
            session.close(send_exit=False)
            return
        self.sessions.add(session)
        try:
            self.handler(session)
        except CallGone as exc:
            log.info('[%s] call handler ended: %s', session.uuid, exc)
        except Exception:
            log.exception('[%s] call handler failed', session.uuid)
        finally:
            self.sessions.discard(session)
            session.close()
