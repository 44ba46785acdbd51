"""Server-side WebSocket connections on gevent sockets, sans-I/O: the `websockets` package's
`ServerProtocol` does the opening handshake (accept with a subprotocol, or reject with an HTTP
status), then parses and builds the frames (its C speedups unmask), except the relay's audio
itself: `_take` finds the frame boundaries in what was read (wsframes.py), and a whole, final,
masked binary frame (while the protocol is open and no fragmented message is in progress) is
unmasked right there with the same C speedup; every other frame is handed to the protocol object
whole and on its own, so it never holds part of a frame between calls and stays in step (pings,
the closing handshake, fragments, text and every protocol error are its own;
tests/test_audio_fork_wsserver.py checks both paths agree on random streams). Why: websockets'
generator-based parser costs several times as much per 320-byte audio frame (BENCHMARKS.md).

Whole-message receive with a timeout (the socket's own, set only when it changes; with none, gevent
arms no timer per read), or every whole message one read brought (`receive_batch`, the relay's hot
path); locked sends that try a non-blocking send first (no timer unless the socket buffer is full);
and the closing handshake (a peer that does not answer our Close within `close_timeout` is dropped,
so a reader waiting without a timeout always ends). Used by the relay for mod_audio_fork's
connections; knows nothing about streams.
"""
from __future__ import annotations

import logging
import socket
from collections import deque
from urllib.parse import parse_qs, urlsplit

import gevent
import gevent.socket
import gevent.ssl
from gevent.lock import Semaphore

from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from .wsframes import apply_mask, frame_extent

log = logging.getLogger("callfork.audio_fork.ws")

__all__ = ["ServerWebSocket", "HandshakeRequest", "WebSocketClosed"]

_RECV = 65536


class WebSocketClosed(Exception):
    """The connection is closed (or broke)."""


class HandshakeRequest:
    """The client's opening request: `path` (without query), `query` (dict of first values),
    `subprotocols`, `headers` (list of (name, value) str pairs, order kept)."""

    def __init__(self, req: Request):
        parts = urlsplit(req.path)
        self.request = req
        self.target = req.path
        self.path = parts.path
        self.query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.subprotocols = [p.strip() for value in req.headers.get_all("Sec-WebSocket-Protocol")
                             for p in value.split(",") if p.strip()]
        self.headers = list(req.headers.raw_items())
        self.host = req.headers.get("Host")


class ServerWebSocket:
    """One accepted TCP connection speaking the server side of RFC 6455."""

    def __init__(self, sock, peer=None, max_message: int = 1 << 20, send_timeout: float = 5.0,
                 close_timeout: float = 5.0, split_audio: bool = True):
        """`split_audio=False`: every frame goes through the protocol object (the reference
        `_take`'s fast path is checked against)."""
        self.sock = sock
        self.peer = peer
        self.max_message = max_message
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        # gevent's plain TCP socket can be asked not to wait (`timeout=0.0`); its SSL socket ignores that
        self._try_send = isinstance(sock, gevent.socket.socket) and not isinstance(sock, gevent.ssl.SSLSocket)
        # the handshake, then the frames: `_take` hands it every frame but plain audio
        self._proto = ServerProtocol(max_size=max_message, logger=log)
        self._request: HandshakeRequest | None = None
        self._events: deque = deque()
        self._send_lock = Semaphore()
        self._parts: list = []
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.closed = False
        self.subprotocol: str | None = None
        self._open = False                         # the handshake was accepted
        self._close_timer = None                   # drops a peer that does not answer our Close
        self._timeout = -1.0                       # what the socket's timeout is set to
        self._text = False                         # the message being assembled is text
        self._buf = b""            # read bytes not yet handed on: the start of an incomplete frame
        self._split = split_audio  # `_take` still splits frames itself (see the module docstring)
        self._fragmented = False   # a fragmented message is in progress (its frames go to `proto`)

    # -- handshake --------------------------------------------------------------------------------

    def read_request(self, timeout: float) -> HandshakeRequest:
        """Read until the upgrade request is complete. Raises WebSocketClosed on EOF, garbage or timeout."""
        proto = self._proto
        with gevent.Timeout(timeout, WebSocketClosed("handshake timeout")):
            while True:
                try:
                    data = self.sock.recv(_RECV)
                except OSError as exc:
                    raise WebSocketClosed(f"recv failed: {exc}") from None
                if data:
                    proto.receive_data(data)
                else:
                    proto.receive_eof()
                events = proto.events_received()
                writes = proto.data_to_send()  # a 4xx answer to a request too large
                if any(writes):
                    try:
                        self._write(writes)
                    except WebSocketClosed:
                        pass
                if proto.handshake_exc is not None:
                    raise WebSocketClosed(f"protocol error: {proto.handshake_exc}")
                if events:
                    # frames sent right behind the request come after it
                    self._events.extend(events[1:])
                    self._request = HandshakeRequest(events[0])
                    return self._request
                if not data:
                    raise WebSocketClosed("EOF")

    def accept(self, subprotocol: str | None = None) -> None:
        """Answer 101 (with `subprotocol`, which must be one the client offered, or none). Raises
        WebSocketClosed when the request is not a valid upgrade (it was answered with a 4xx)."""
        proto = self._proto
        response = proto.accept(self._request.request)
        if response.status_code == 101 and subprotocol is not None:
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
            proto.subprotocol = subprotocol
        proto.send_response(response)
        with self._send_lock:
            self._write(proto.data_to_send())
        if proto.state is not State.OPEN:
            self._shutdown()
            raise WebSocketClosed(f"bad upgrade request: {proto.handshake_exc}")
        self.subprotocol = subprotocol
        self._open = True
        # a frame cut short behind the request is in the protocol object's reader: from here on it
        # parses everything (such a client is not mod_audio_fork, which waits for the 101)
        if proto.reader.buffer:
            self._split = False

    def reject(self, status: int = 403, body: bytes = b"") -> None:
        """Answer the upgrade with an HTTP error status and close the socket."""
        proto = self._proto
        proto.send_response(proto.reject(status, body.decode("utf-8", "replace")))
        try:
            with self._send_lock:
                self._write(proto.data_to_send())
        except WebSocketClosed:
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
            self._read(timeout)

    def receive_batch(self, timeout: float | None = None) -> list | None:
        """Every whole message available now (str or bytes, in order): those already parsed, else
        those the next read brings (at least one); None once the connection is closed, as `receive`.
        One call per read: what `receive` does per message, this does once per read."""
        out = []
        events = self._events
        handle = self._handle
        while True:
            while events:
                msg = handle(events.popleft())
                if msg is not None:
                    out.append(msg)
                elif self.closed:
                    return out or None
            if out:
                return out
            if self.closed:
                return None
            self._read(timeout)

    def receive_read(self, timeout: float | None = None) -> list | None:
        """The whole messages already parsed or, if none, those the next read brings: possibly
        none (the read ended mid-frame); None once the connection is closed."""
        out = []
        if not self._events and not self.closed:
            self._read(timeout)
        while self._events:
            msg = self._handle(self._events.popleft())
            if msg is not None:
                out.append(msg)
        return None if self.closed and not out else out

    def _read(self, timeout: float | None) -> None:
        if timeout != self._timeout:
            self._timeout = timeout
            self.sock.settimeout(timeout)  # None: gevent waits without a timer per read
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
            self._take(data)
        else:
            if self._buf:  # an incomplete frame: the protocol object reports the broken stream
                proto.receive_data(self._buf)
                self._buf = b""
            proto.receive_eof()
            self._events.extend(proto.events_received())
        writes = proto.data_to_send()  # pongs, the reply to a Close, a Close after a protocol error
        if writes:
            with self._send_lock:
                try:
                    self._write(writes)
                except WebSocketClosed:
                    pass
        exc = proto.parser_exc
        if exc is not None and not isinstance(exc, EOFError):
            # the protocol object has sent the Close (1002, 1007, 1009): the connection is done
            log.warning("websocket protocol error from %s: %s", self.peer, exc)
            self._events.append(_BROKEN)
        elif not data or exc is not None:
            self._events.append(_EOF)

    def _take(self, data: bytes) -> None:
        """Split `data` into frames (module docstring): events go to `_events` in wire order,
        audio frames as their unmasked payload (bytes), the rest as the protocol object's events."""
        proto = self._proto
        events = self._events
        if not self._split:
            proto.receive_data(data)
            events.extend(proto.events_received())
            return
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        while True:
            extent = frame_extent(buf, pos, n)
            if extent is None:
                break
            head, length = extent
            if length > self.max_message:
                # too long to hold whole: from here on the protocol object gets everything (and
                # refuses this frame with 1009)
                self._split = False
                proto.receive_data(buf[pos:])
                events.extend(proto.events_received())
                pos = n
                break
            end = pos + head + length
            if end > n:
                break
            b0 = buf[pos]
            if b0 == 0x82 and buf[pos + 1] & 0x80 and not self._fragmented:  # FIN, no RSV, binary, masked
                events.append(apply_mask(buf[pos + head:end], buf[pos + head - 4:pos + head]))
            else:
                op = b0 & 0x0F
                if op == 1 or op == 2:
                    self._fragmented = not b0 & 0x80
                elif op == 0 and b0 & 0x80:
                    self._fragmented = False
                proto.receive_data(buf[pos:end])
                events.extend(proto.events_received())
                if proto.state is not State.OPEN:
                    # closing or failed: the protocol object takes (or discards) the rest itself
                    self._split = False
                    if end < n:
                        proto.receive_data(buf[end:])
                        events.extend(proto.events_received())
                    pos = n
                    break
            pos = end
        self._buf = buf[pos:] if pos < n else b""

    def _handle(self, ev):
        if ev.__class__ is bytes:  # an audio frame from `_take`
            return ev
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
        self._send_frame(self._proto.send_text, text.encode("utf-8"))

    def send_bytes(self, data: bytes) -> None:
        self._send_frame(self._proto.send_binary, data)

    def _send_frame(self, method, data) -> None:
        with self._send_lock:
            try:
                method(data)
            except Exception as exc:  # websockets' InvalidState: not open any more
                raise WebSocketClosed(f"cannot send: {exc}") from None
            self._write(self._proto.data_to_send())

    def _write(self, chunks) -> None:
        sock = self.sock
        for data in chunks:
            if not data:  # SEND_EOF: the protocol is done with the connection
                continue
            try:
                if self._try_send:
                    # what the kernel takes at once (the usual case: no timer per frame); the rest,
                    # if any, waits below with the send timeout
                    try:
                        sent = sock.send(data, 0, timeout=0.0)
                    except BlockingIOError:
                        sent = 0
                    if sent == len(data):
                        continue
                    data = data[sent:]
                with gevent.Timeout(self.send_timeout, WebSocketClosed("send timeout")):
                    sock.sendall(data)
            except OSError as exc:
                raise WebSocketClosed(f"send failed: {exc}") from None

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (the peer's Close is read by `receive`). Idempotent."""
        if self.closed:
            return
        proto = self._proto
        if not self._open:
            self.closed = True
            self._shutdown()
            return
        if proto.state is State.OPEN:
            try:
                self._send_frame(lambda _: proto.send_close(code, reason), None)
            except WebSocketClosed:
                self.closed = True
                self._shutdown()
                return
            # the peer has `close_timeout` s to answer; then the connection is dropped (a reader
            # blocked in `receive` gets None)
            self._close_timer = gevent.spawn_later(self.close_timeout, self._close_expired)
        elif proto.state is not State.CLOSING:
            self.closed = True
            self._shutdown()

    def _close_expired(self) -> None:
        self._close_timer = None
        if not self.closed:
            log.info("websocket %s: no Close from the peer within %.1fs: dropping it", self.peer,
                     self.close_timeout)
            self.close_code = 1006
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self.closed = True
        self._shutdown()

    # -- plumbing ---------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        timer, self._close_timer = self._close_timer, None
        if timer is not None and timer is not gevent.getcurrent():
            timer.kill(block=False)  # the closing handshake is over: the timer would hold this
        try:
            self.sock.close()
        except OSError:
            pass


class _Eof:
    pass


_EOF = _Eof()      # the peer closed TCP
_BROKEN = _Eof()   # a protocol error ended the connection
