"""Server-side WebSocket connections on gevent sockets with wsproto (sans-IO): the opening
handshake (accept with a subprotocol, or reject with an HTTP status), whole-message receive with
a timeout, locked sends, and the closing handshake. Used by the relay for mod_audio_fork's
connections; knows nothing about streams.
"""
from __future__ import annotations

import logging
from collections import deque
from urllib.parse import parse_qs, urlsplit

import gevent
from gevent.lock import Semaphore
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection,
                            RejectData, Request, TextMessage)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

log = logging.getLogger("callfork.audio_fork.ws")

__all__ = ["ServerWebSocket", "HandshakeRequest", "WebSocketClosed"]

_RECV = 65536


class WebSocketClosed(Exception):
    """The connection is closed (or broke)."""


class HandshakeRequest:
    """The client's opening request: `path` (without query), `query` (dict of first values),
    `subprotocols`, `headers` (list of (name, value) str pairs, order kept)."""

    def __init__(self, req: Request):
        parts = urlsplit(req.target)
        self.target = req.target
        self.path = parts.path
        self.query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.subprotocols = list(req.subprotocols)
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.extra_headers]
        self.host = req.host


class ServerWebSocket:
    """One accepted TCP connection speaking the server side of RFC 6455."""

    def __init__(self, sock, peer=None, max_message: int = 1 << 20, send_timeout: float = 5.0):
        self.sock = sock
        self.peer = peer
        self.max_message = max_message
        self.send_timeout = send_timeout
        self._ws = WSConnection(ConnectionType.SERVER)
        self._events: deque = deque()
        self._send_lock = Semaphore()
        self._parts: list = []
        self._parts_len = 0
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.closed = False
        self.subprotocol: str | None = None

    # -- handshake --------------------------------------------------------------------------------

    def read_request(self, timeout: float) -> HandshakeRequest:
        """Read until the upgrade request is complete. Raises WebSocketClosed on EOF, garbage or timeout."""
        with gevent.Timeout(timeout, WebSocketClosed("handshake timeout")):
            while True:
                while self._events:
                    ev = self._events.popleft()
                    if isinstance(ev, Request):
                        return HandshakeRequest(ev)
                self._fill()

    def accept(self, subprotocol: str | None = None) -> None:
        self.subprotocol = subprotocol
        self._send(AcceptConnection(subprotocol=subprotocol))

    def reject(self, status: int = 403, body: bytes = b"") -> None:
        """Answer the upgrade with an HTTP error status and close the socket."""
        try:
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
            self._send(RejectConnection(status_code=status, headers=headers, has_body=bool(body)))
            if body:
                self._send(RejectData(data=body, body_finished=True))
        except (WebSocketClosed, LocalProtocolError):
            pass
        self._shutdown()

    # -- messages ---------------------------------------------------------------------------------

    def receive(self, timeout: float | None = None):
        """The next whole message (str or bytes); None once the connection is closed (see
        `close_code`, 1006 when it broke without a Close). Raises TimeoutError after `timeout` s."""
        timer = gevent.Timeout(timeout) if timeout else None
        if timer:
            timer.start()
        try:
            while True:
                while self._events:
                    ev = self._events.popleft()
                    msg = self._handle(ev)
                    if msg is not None:
                        return msg
                    if self.closed:
                        return None
                if self.closed:
                    return None
                try:
                    self._fill()
                except WebSocketClosed:
                    self.closed = True
                    self._shutdown()
                    return None
        except gevent.Timeout as t:
            if t is not timer:
                raise
            raise TimeoutError("no message within %.1fs" % timeout) from None
        finally:
            if timer:
                timer.close()

    def _handle(self, ev):
        if isinstance(ev, (TextMessage, BytesMessage)):
            self._parts.append(ev.data)
            self._parts_len += len(ev.data)
            if self._parts_len > self.max_message:
                self.close(1009, "message too big")
                return None
            if not ev.message_finished:
                return None
            parts, self._parts, self._parts_len = self._parts, [], 0
            if isinstance(ev, TextMessage):
                return parts[0] if len(parts) == 1 else "".join(parts)
            return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
        if isinstance(ev, Ping):
            try:
                self._send(ev.response())
            except WebSocketClosed:
                self.closed = True
            return None
        if ev is _EOF:
            if self.close_code is None:
                self.close_code = 1006
            self.closed = True
            self._shutdown()
            return None
        if isinstance(ev, CloseConnection):
            self.close_code = ev.code
            self.close_reason = ev.reason or ""
            try:
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._send(ev.response())
            except (WebSocketClosed, LocalProtocolError):
                pass
            self.closed = True
            self._shutdown()
            return None
        return None

    def send_text(self, text: str) -> None:
        self._send(TextMessage(data=text))

    def send_bytes(self, data: bytes) -> None:
        self._send(BytesMessage(data=data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (the peer's Close is read by `receive`). Idempotent."""
        if self.closed:
            return
        try:
            if self._ws.state is ConnectionState.OPEN:
                self._send(CloseConnection(code=code, reason=reason))
            elif self._ws.state is ConnectionState.REMOTE_CLOSING:
                self._send(CloseConnection(code=code, reason=reason))
                self.closed = True
                self._shutdown()
        except (WebSocketClosed, LocalProtocolError):
            self.closed = True
            self._shutdown()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self.closed = True
        self._shutdown()

    # -- plumbing ---------------------------------------------------------------------------------

    def _fill(self) -> None:
        try:
            data = self.sock.recv(_RECV)
        except OSError as exc:
            raise WebSocketClosed(f"recv failed: {exc}") from None
        if not data:
            self._ws.receive_data(None)
            self._events.extend(self._ws.events())
            if not self._events:
                raise WebSocketClosed("EOF")
            self._events.append(_EOF)
            return
        try:
            self._ws.receive_data(data)
            self._events.extend(self._ws.events())
        except RemoteProtocolError as exc:
            log.warning("websocket protocol error from %s: %s", self.peer, exc)
            raise WebSocketClosed(f"protocol error: {exc}") from None

    def _send(self, event) -> None:
        with self._send_lock:
            try:
                data = self._ws.send(event)
            except LocalProtocolError as exc:
                raise WebSocketClosed(f"cannot send: {exc}") from None
            if not data:
                return
            try:
                with gevent.Timeout(self.send_timeout, WebSocketClosed("send timeout")):
                    self.sock.sendall(data)
            except OSError as exc:
                raise WebSocketClosed(f"send failed: {exc}") from None

    def _shutdown(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _Eof:
    pass


_EOF = _Eof()
