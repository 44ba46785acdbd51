"""The stream's WebSocket to the app, client side, on a gevent socket: `websockets`' sans-I/O
`ClientProtocol` does the opening handshake and parses every frame the app sends (it answers pings,
replies to a Close, and fails the connection with 1002/1009 on a protocol error); this module does
the I/O around it and owns the send lock.

What the stream sends (its media and control texts) does not go through the protocol object: the
caller builds the masked frames itself (appframes.py, a third of the CPU of `Frame.serialize`) and
hands the bytes to `send_now` (a non-blocking send from the greenlet that made them, when nothing
else is part-way through a frame) or `send_all` (the writer greenlet). The protocol object's own
output (pongs, Close) is written under the same lock, so frames never interleave. It knows nothing
about streams or dialects.
"""
from __future__ import annotations

import socket
from collections import deque

import gevent
import gevent.socket
import gevent.ssl
from gevent.lock import Semaphore
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, InvalidURI
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = ["AppConnection", "AppConnectError", "AppConnectionLost", "MAX_MESSAGE"]

READ_SIZE = 65536          # one read from the app socket
MAX_MESSAGE = 16 << 20     # an app message (a playAudio of minutes of audio) larger than this fails with 1009
MAX_FRAGMENTS = 4096       # a message in more frames than this fails with 1009 too
YIELD_EVERY = 64           # frames handled before the reader lets the other greenlets run


class AppConnectError(Exception):
    """The app could not be reached, or refused the WebSocket handshake."""


class AppConnectionLost(Exception):
    """The connection broke without a closing handshake (EOF, reset, a protocol error)."""


class AppConnection:
    """An open WebSocket to the app. `receive()` is for one reader greenlet; the send methods may
    be called from any greenlet (they serialise on `lock`)."""

    def __init__(self, sock, proto: ClientProtocol, pending: deque):
        self.sock = sock
        self._proto = proto
        self._pending = pending          # frames parsed along with the handshake's response
        self._parts: list = []           # the fragments of the message being received
        self._size = 0                   # ... and their bytes
        self._text = False
        self._since_yield = 0
        self.lock = Semaphore()
        self.close_code: int | None = None
        # gevent's plain TCP socket can be asked not to wait (`timeout=0.0`); its SSL socket ignores that
        self.can_send_now = (isinstance(sock, gevent.socket.socket)
                             and not isinstance(sock, gevent.ssl.SSLSocket))

    @classmethod
    def connect(cls, url: str, headers=(), timeout: float = 5.0, sndbuf: int | None = None,
                resolve=None) -> "AppConnection":
        """Open the connection (TCP, TLS for wss://, the opening handshake) within `timeout` s.
        `headers`: extra "Name: value" request headers (a Sec-WebSocket-Protocol one offers those
        subprotocols). `resolve(host, port)`: the getaddrinfo tuples to dial (default: gevent's
        getaddrinfo); it may refuse with ValueError (a private address). The name stays the Host
        header and the TLS server name. A redirect (3xx) is not followed. Raises AppConnectError."""
        try:
            uri = parse_uri(url)
        except InvalidURI as exc:
            raise AppConnectError(f"bad app url: {exc}") from None
        extra, subprotocols = [], None
        for line in headers:
            name, sep, value = str(line).partition(":")
            if not sep or not name.strip():
                raise AppConnectError(f"bad handshake header {line!r} (expected 'Name: value')")
            if name.strip().lower() == "sec-websocket-protocol":
                subprotocols = [p.strip() for p in value.split(",") if p.strip()]
            else:
                extra.append((name.strip(), value.strip()))
        proto = ClientProtocol(uri, subprotocols=subprotocols, max_size=MAX_MESSAGE)
        request = proto.connect()
        for name, value in extra:
            if name in request.headers:
                del request.headers[name]
            request.headers[name] = value
        sock = None
        try:
            with gevent.Timeout(timeout, AppConnectError(f"no handshake within {timeout}s")):
                sock = _open_socket(uri, sndbuf, resolve)
                proto.send_request(request)
                sock.sendall(b"".join(proto.data_to_send()))
                pending = _read_response(sock, proto)
        except AppConnectError:
            _close(sock)
            raise
        except InvalidStatus as exc:
            _close(sock)
            raise AppConnectError(f"handshake rejected: HTTP {exc.response.status_code}") from None
        except Exception as exc:  # noqa: BLE001 - DNS, refused, TLS, a bad response: one outcome
            _close(sock)
            raise AppConnectError(f"{type(exc).__name__}: {exc}") from None
        sock.settimeout(None)
        return cls(sock, proto, pending)

    # -- receiving (one reader greenlet) ---------------------------------------------------------

    def receive(self):
        """The next data message: (True, payload bytes) for text (UTF-8 not checked here), (False,
        payload) for binary. None when the app's Close arrived (answered; see `close_code`) or
        ours was answered. Raises AppConnectionLost when the connection broke."""
        proto = self._proto
        pending = self._pending
        while True:
            while pending:
                # a flood of small frames is read without blocking: let the hub run now and then
                self._since_yield += 1
                if self._since_yield >= YIELD_EVERY:
                    self._since_yield = 0
                    gevent.sleep(0)
                frame = pending.popleft()
                op = frame.opcode
                if op is Opcode.TEXT or op is Opcode.BINARY:
                    if frame.fin:
                        return op is Opcode.TEXT, frame.data
                    self._text = op is Opcode.TEXT
                    self._parts = [frame.data]
                    self._size = len(frame.data)
                elif op is Opcode.CONT:
                    self._parts.append(frame.data)
                    self._size += len(frame.data)
                    if self._size > MAX_MESSAGE or len(self._parts) > MAX_FRAGMENTS:
                        self._parts = []
                        self._fail(1009, "message too big")
                    if frame.fin:
                        data, self._parts = b"".join(self._parts), []
                        return self._text, data
                elif op is Opcode.CLOSE:
                    rcvd = proto.close_rcvd
                    self.close_code = rcvd.code if rcvd is not None else None
                    self._flush()  # our reply to their Close (the protocol object built it)
                    return None
                # ping (the protocol object queued the pong), pong: nothing to hand on
            self._flush()
            if proto.parser_exc is not None:
                raise AppConnectionLost(f"protocol error: {proto.parser_exc}")
            try:
                data = self.sock.recv(READ_SIZE)
            except OSError as exc:
                raise AppConnectionLost(repr(exc)) from None
            if not data:
                proto.receive_eof()
                raise AppConnectionLost("connection closed without a Close frame")
            proto.receive_data(data)
            pending.extend(proto.events_received())

    def _fail(self, code: int, reason: str) -> None:
        self._proto.fail(code, reason)
        self._flush()
        raise AppConnectionLost(f"{reason} ({code})")

    def _flush(self) -> None:
        """Write what the protocol object has to send (pongs, Close)."""
        writes = self._proto.data_to_send()
        data = b"".join(writes)
        if data:
            try:
                self.send_all(data, 1.0)
            except (OSError, TimeoutError):
                pass

    # -- sending (any greenlet) ------------------------------------------------------------------

    def send_now(self, data: bytes) -> int | None:
        """Send without waiting: how many bytes the socket took (0 when its buffer is full; the
        caller must send the rest before anything else), or None when a send cannot be made now
        (TLS, or another greenlet is part-way through a frame). Raises OSError when the socket failed.
        The lock is checked, not taken: nothing here switches greenlets, so no other sender can
        start meanwhile (taking gevent's lock costs 0.7 us a frame against 0.1 for the check)."""
        if not self.can_send_now or self.lock.locked():
            return None
        try:
            return self.sock.send(data, 0, timeout=0.0)
        except BlockingIOError:
            return 0

    def send_all(self, data: bytes, timeout: float) -> None:
        """All of `data`, under the send lock, within `timeout` s (TimeoutError) or OSError."""
        with gevent.Timeout(timeout, TimeoutError("send timeout")):
            with self.lock:
                self.sock.sendall(data)

    def ping(self, timeout: float) -> None:
        self._proto.send_ping(b"")
        self.send_all(b"".join(self._proto.data_to_send()), timeout)

    def close(self, code: int = 1000, timeout: float = 1.0) -> bool:
        """Send our Close (the reader then gets the app's answer as None). False if it could not
        be sent (already closing, or the socket failed)."""
        if self._proto.state is not State.OPEN:
            return False
        try:
            self._proto.send_close(code)
            self.send_all(b"".join(self._proto.data_to_send()), timeout)
        except Exception:  # noqa: BLE001 - a dead or stalled socket: nothing more to say to it
            return False
        return True

    def shutdown(self) -> None:
        """Drop the TCP connection (after the closing handshake, or instead of it)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        _close(self.sock)


def _open_socket(uri, sndbuf: int | None, resolve=None):
    # gevent's resolver does not block the hub; the first address is the one tried (with `resolve`,
    # an address it checked: no second lookup that could answer differently)
    if resolve is None:
        infos = gevent.socket.getaddrinfo(uri.host, uri.port, 0, socket.SOCK_STREAM)
    else:
        try:
            infos = resolve(uri.host, uri.port)
        except ValueError as exc:
            raise AppConnectError(str(exc)) from None
    family, kind, proto, _, address = infos[0]
    sock = gevent.socket.socket(family, kind, proto)
    try:
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # an idle stream's half-open connection (the app's host gone) is found by the kernel in ~1 min
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        if uri.secure:
            sock = gevent.ssl.create_default_context().wrap_socket(sock, server_hostname=uri.host)
    except BaseException:
        _close(sock)
        raise
    return sock


def _read_response(sock, proto: ClientProtocol) -> deque:
    """Read until the handshake's response is parsed; raise its error if it failed. Returns the
    frames that came right behind the response."""
    events: deque = deque()
    while True:
        data = sock.recv(READ_SIZE)
        if data:
            proto.receive_data(data)
        else:
            proto.receive_eof()
        events.extend(proto.events_received())
        if proto.handshake_exc is not None:
            raise proto.handshake_exc
        if events and isinstance(events[0], Response):
            events.popleft()
            return events
        if not data:
            raise ConnectionError("the app closed the connection during the handshake")


def _close(sock) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
