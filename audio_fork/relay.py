"""The relay's WebSocket server: mod_audio_fork connects to `/fork/<stream_id>?token=<token>`.

It checks the token (constant time) against the registry of expected streams, answers 403 to
anything unknown or mismatched (logged), echoes the subprotocol `audio.drachtio.org` when offered,
and hands the accepted connection to the registered `StreamSession`, whose module loop runs in
this connection's greenlet. It also keeps the counters the metrics endpoint reads.
"""
from __future__ import annotations

import hmac
import logging
import socket
from urllib.parse import quote, unquote


from gevent.server import StreamServer

from .log_limit import LogLimiter
from .wsserver import ServerWebSocket, WebSocketClosed

log = logging.getLogger("callfork.audio_fork.relay")

__all__ = ["Relay", "SUBPROTOCOL", "FORK_PATH"]

SUBPROTOCOL = "audio.drachtio.org"
FORK_PATH = "/fork/"


class Relay:
    def __init__(self, listen=("127.0.0.1", 0), handshake_timeout: float = 5.0, backlog: int = 1024):
        self.listen = listen
        self.handshake_timeout = handshake_timeout
        self._server = StreamServer(listen, self._handle, backlog=backlog)
        self._sessions: dict = {}  # stream_id -> session
        self._conns: set = set()
        self._refusals_log = LogLimiter(burst=10, window_s=60.0)   # anyone reaching the port causes them
        # metrics
        self.frames_in = 0      # 20 ms frames received from mod_audio_fork
        self.frames_out = 0     # 20 ms frames sent back to mod_audio_fork (playout)
        self.streams_live = 0   # module connections currently attached
        self.rejected = 0       # upgrades answered with an HTTP error
        # summed over every stream (exported in /metrics)
        self.app_dropped = 0            # messages to an app dropped: its send queue was full
        self.protocol_errors = 0        # app messages ignored (bad JSON, unknown event, ...)
        self.playout_dropped_bytes = 0  # app audio dropped: its playout queue was full
        self.module_overruns = 0        # mod_audio_fork buffer_overrun events

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._server.start()
        log.info("relay listening on %s:%s", *self.address)

    def stop(self, timeout: float = 2.0) -> None:
        for conn in list(self._conns):
            try:
                conn.close(1001, "relay stopping")
            except Exception:  # noqa: BLE001 - best effort on shutdown
                conn.abort()
        self._server.stop(timeout=timeout)

    @property
    def address(self) -> tuple:
        return self._server.address[:2]

    # -- registry ---------------------------------------------------------------------------------

    def url_for(self, stream_id: str, token: str) -> str:
        host, port = self.address
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"  # listening on all interfaces: FreeSWITCH runs next to us
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{port}{FORK_PATH}{quote(stream_id, safe='')}?token={quote(token, safe='')}"

    def register(self, session) -> None:
        """`session` needs `.stream_id`, `.token`, `.accepting_module` and `.run_module(conn)`."""
        if session.stream_id in self._sessions and self._sessions[session.stream_id] is not session:
            raise ValueError(f"stream {session.stream_id} is already registered")
        self._sessions[session.stream_id] = session

    def unregister(self, stream_id: str) -> None:
        self._sessions.pop(stream_id, None)

    def sessions(self) -> list:
        return list(self._sessions.values())

    # -- connections ------------------------------------------------------------------------------

    def _handle(self, sock, peer) -> None:
        # paced audio to the module (bidirectional) must not wait for Nagle and a delayed ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = ServerWebSocket(sock, peer)
        try:
            req = conn.read_request(self.handshake_timeout)
        except WebSocketClosed as exc:
            self._refusals_log.warning(log, "relay: bad or no upgrade from %s: %s", peer, exc)
            conn.abort()
            return
        session = self._authorise(req, peer)
        if session is None:
            self.rejected += 1
            conn.reject(403, b"forbidden\n")
            return
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in req.subprotocols else None
        try:
            conn.accept(subprotocol)
        except WebSocketClosed as exc:
            log.warning("relay: accept failed for stream %s: %s", session.stream_id, exc)
            conn.abort()
            return
        self._conns.add(conn)
        self.streams_live += 1
        try:
            session.run_module(conn)
        except Exception:  # noqa: BLE001 - one stream's bug must not kill the server
            log.exception("relay: stream %s (call %s) module loop failed", session.stream_id,
                          getattr(session, "call_uuid", "?"))
        finally:
            self.streams_live -= 1
            self._conns.discard(conn)
            conn.abort()

    def _authorise(self, req, peer):
        path = req.path
        if not path.startswith(FORK_PATH):
            self._refusals_log.warning(log, "relay: 403 for %s: path %r is not %s<id>", peer, path,
                                       FORK_PATH)
            return None
        stream_id = unquote(path[len(FORK_PATH):])
        token = req.query.get("token", "")
        session = self._sessions.get(stream_id)
        if session is None:
            self._refusals_log.warning(log, "relay: 403 for %s: unknown stream %r", peer, stream_id)
            return None
        if not hmac.compare_digest(token.encode("utf-8"), session.token.encode("utf-8")):
            self._refusals_log.warning(log, "relay: 403 for %s: wrong token for stream %s (call %s)", peer,
                                       stream_id, getattr(session, "call_uuid", "?"))
            return None
        if not session.accepting_module:
            self._refusals_log.warning(log, "relay: 403 for %s: stream %s (call %s) is not expecting a "
                                       "connection", peer, stream_id, getattr(session, "call_uuid", "?"))
            return None
        return session


