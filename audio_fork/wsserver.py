"""Server-side WebSocket connections on gevent sockets, sans-I/O: wsproto does the opening handshake
(accept with a subprotocol, or reject with an HTTP status); once accepted, the `websockets`
package's sans-I/O `ServerProtocol` parses and builds the frames (its C speedups unmask; about 3x
less CPU per 20 ms frame than wsproto's frame layer, BENCHMARKS.md "Second round"). Whole-message
receive with a timeout (the socket's own, set only when it changes), locked sends, and the
closing handshake. Used by the relay for mod_audio_fork's connections; knows nothing about streams.
"""
from __future__ import annotations

import logging
import socket
from collections import deque
from urllib.parse import parse_qs, urlsplit

import gevent
from gevent.lock import Semaphore
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, RejectConnection, RejectData, Request,
                            TextMessage)
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
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.closed = False
        self.subprotocol: str | None = None
        self._proto: ServerProtocol | None = None  # the frame layer, once accepted
        self._timeout = -1.0                       # what the socket's timeout is set to
        self._text = False                         # the message being assembled is text

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
        proto = ServerProtocol(state=State.OPEN, max_size=self.max_message, logger=log)
        # bytes that came right behind the upgrade request (wsproto's server side keeps none)
        h11 = getattr(self._ws.handshake, "_h11_connection", None)
        trailing = getattr(h11, "trailing_data", (b"",))[0] if h11 is not None else b""
        self._proto = proto
        self._events.clear()  # wsproto's handshake events; frames come from `proto` from now on
        if trailing:
            proto.receive_data(bytes(trailing))
            self._events.extend(proto.events_received())

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
        while True:
            events = self._events
            while events:
                msg = self._handle(events.popleft())
                if msg is not None:
                    return msg
                if self.closed:
                    return None
            if self.closed:
                return None
            if timeout != self._timeout:
                self._timeout = timeout
                self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(_RECV)
            except socket.timeout:
                raise TimeoutError("no message within %.1fs" % timeout) from None
            except OSError:
                data = b""
            self._feed(data)

    @property
    def buffered(self) -> bool:
        """True when the next `receive` returns at once (messages already read and parsed)."""
        return bool(self._events)

    def _feed(self, data: bytes) -> None:
        proto = self._proto
        if data:
            proto.receive_data(data)
        else:
            proto.receive_eof()
        self._events.extend(proto.events_received())
        self._flush()  # pongs, the reply to a Close, a Close after a protocol error
        exc = proto.parser_exc
        if exc is not None and not isinstance(exc, EOFError):
            # the protocol object has sent the Close (1002, 1007, 1009): the connection is done
            log.warning("websocket protocol error from %s: %s", self.peer, exc)
            self._events.append(_BROKEN)
        elif not data or exc is not None:
            self._events.append(_EOF)

    def _handle(self, ev):
        if ev is _EOF or ev is _BROKEN:
            if ev is _EOF and self.close_code is None:
                self.close_code = 1006
            self.closed = True
            self._shutdown()
            return None
        op = ev.opcode
        if op is Opcode.BINARY or op is Opcode.TEXT:
            if ev.fin:
                if op is Opcode.BINARY:
                    return ev.data
                return self._decode(ev.data)
            self._text = op is Opcode.TEXT
            self._parts = [ev.data]
            return None
        if op is Opcode.CONT:
            self._parts.append(ev.data)
            if not ev.fin:
                return None
            data, self._parts = b"".join(self._parts), []
            return self._decode(data) if self._text else data
        if op is Opcode.CLOSE:
            rcvd = self._proto.close_rcvd
            if rcvd is not None:
                self.close_code = rcvd.code
                self.close_reason = rcvd.reason or ""
            self.closed = True
            self._shutdown()
            return None
        return None  # ping (answered by the protocol object), pong

    def _decode(self, data: bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.close(1007, "invalid UTF-8")
            return None

    def send_text(self, text: str) -> None:
        if self._proto is None:
            self._send(TextMessage(data=text))
            return
        self._send_frame(self._proto.send_text, text.encode("utf-8"))

    def send_bytes(self, data: bytes) -> None:
        if self._proto is None:
            self._send(BytesMessage(data=data))
            return
        self._send_frame(self._proto.send_binary, data)

    def _send_frame(self, method, data) -> None:
        with self._send_lock:
            try:
                method(data)
            except Exception as exc:  # websockets' InvalidState: not open any more
                raise WebSocketClosed(f"cannot send: {exc}") from None
            self._write(self._proto.data_to_send())

    def _flush(self) -> None:
        with self._send_lock:
            try:
                self._write(self._proto.data_to_send())
            except WebSocketClosed:
                pass

    def _write(self, chunks) -> None:
        for data in chunks:
            if not data:  # SEND_EOF: the protocol is done with the connection
                continue
            try:
                with gevent.Timeout(self.send_timeout, WebSocketClosed("send timeout")):
                    self.sock.sendall(data)
            except OSError as exc:
                raise WebSocketClosed(f"send failed: {exc}") from None

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (the peer's Close is read by `receive`). Idempotent."""
        if self.closed:
            return
        proto = self._proto
        if proto is None:
            self.closed = True
            self._shutdown()
            return
        if proto.state is State.OPEN:
            try:
                self._send_frame(lambda _: proto.send_close(code, reason), None)
            except WebSocketClosed:
                self.closed = True
                self._shutdown()
        elif proto.state is not State.CLOSING:
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


_EOF = _Eof()      # the peer closed TCP
_BROKEN = _Eof()   # a protocol error ended the connection
