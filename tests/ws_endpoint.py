"""One end of a WebSocket connection for the tests' fakes: a websockets sans-I/O protocol object
(`ClientProtocol` or `ServerProtocol`) on a gevent socket, and `connect()`, a client's opening
handshake.

`Endpoint.read()` receives the next bytes and returns what they completed: whole messages as
(Opcode.TEXT, str) and (Opcode.BINARY, bytes), pings as (Opcode.PING, payload) and the peer's Close
as (Opcode.CLOSE, websockets.frames.Close); the protocol object's own answers (a Pong, the echo of a
Close, the Close that fails a connection whose frames it cannot parse or whose text is not UTF-8)
are written at once. Every write takes the endpoint's lock, so several greenlets may send; a send
the connection's state does not allow raises websockets' `InvalidState`. `connect()` raises
`InvalidStatus` when the server answers the upgrade with another HTTP status
(`.response.status_code`), another `InvalidHandshake` for any other unacceptable answer.
"""
from __future__ import annotations

import codecs

from gevent import socket
from gevent.lock import Semaphore
from websockets.client import ClientProtocol
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.uri import parse_uri


class Endpoint:
    def __init__(self, sock, proto, pending=()):
        """`pending`: frames that came with the opening handshake."""
        self.sock = sock
        self.proto = proto
        self.error: Exception | None = None   # why the protocol object failed the connection
        self._lock = Semaphore()
        self._messages = _Messages()
        self._pending = list(pending)

    @property
    def subprotocol(self):
        return self.proto.subprotocol

    # --- server side: the opening handshake ----------------------------------------------------

    def read_request(self) -> Request | None:
        """The client's upgrade request; None when the peer went away or sent no valid request (then
        the protocol object's refusal, if it has one, was written)."""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self.proto.receive_data(data)
            events = self.proto.events_received()
            if events:
                request, self._pending = events[0], events[1:]
                return request
            if self.proto.handshake_exc is not None:
                self._flush()
                return None

    def answer(self, response: Response) -> None:
        """Send the handshake response: `proto.accept(request)` or `proto.reject(status, text)`."""
        with self._lock:
            self.proto.send_response(response)
            self._write()

    # --- sending ---------------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self.send(Frame(Opcode.TEXT, text.encode("utf-8")))

    def send_binary(self, data: bytes) -> None:
        self.send(Frame(Opcode.BINARY, data))

    def send(self, *frames: Frame) -> None:
        """Data, ping and pong frames, all in one write."""
        senders = {Opcode.TEXT: self.proto.send_text, Opcode.BINARY: self.proto.send_binary,
                   Opcode.CONT: self.proto.send_continuation}
        with self._lock:
            for frame in frames:
                if frame.opcode is Opcode.PING:
                    self.proto.send_ping(frame.data)
                elif frame.opcode is Opcode.PONG:
                    self.proto.send_pong(frame.data)
                else:
                    senders[frame.opcode](frame.data, frame.fin)
            self._write()

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        with self._lock:
            self.proto.send_close(code, reason)
            self._write()

    def abort(self) -> None:
        """Drop the TCP connection, no close handshake."""
        try:
            self.sock.close()
        except OSError:
            pass

    # --- receiving -------------------------------------------------------------------------------

    def read(self, bufsize: int = 65536) -> list | None:
        """What the next bytes from the peer complete (frames that came with the handshake first);
        None once the peer closed the TCP connection, the socket failed or the protocol object
        failed the connection (`error`)."""
        if self.error is not None:
            return None
        if not self._pending:
            try:
                data = self.sock.recv(bufsize)
            except OSError:
                return None
            if not data:
                return None
            self.proto.receive_data(data)
        frames, self._pending = self._pending + self.proto.events_received(), []
        out = []
        for frame in frames:
            if frame.opcode is Opcode.PING:
                out.append((Opcode.PING, frame.data))
            elif frame.opcode is Opcode.CLOSE:
                out.append((Opcode.CLOSE, Close.parse(frame.data)))
            elif frame.opcode is not Opcode.PONG:
                try:
                    message = self._messages.add(frame)
                except UnicodeDecodeError as exc:
                    self.proto.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                    self.error = exc
                    break
                if message is not None:
                    out.append(message)
        self.error = self.error or self.proto.parser_exc
        if self.error is not None or any(kind is Opcode.PING or kind is Opcode.CLOSE for kind, _ in out):
            self._flush()
        return out

    def _flush(self) -> None:
        with self._lock:
            try:
                self._write()
            except OSError:
                pass

    def _write(self) -> None:
        data = b"".join(self.proto.data_to_send())   # an end-of-stream marker (b"") joins as nothing
        if data:
            self.sock.sendall(data)


def connect(url: str, subprotocols=None, headers=(), timeout: float = 5.0) -> Endpoint:
    """Open a ws:// connection: the request of websockets' ClientProtocol plus `headers` ((name,
    value) pairs). The socket has no timeout once the connection is open."""
    uri = parse_uri(url)
    proto = ClientProtocol(uri, subprotocols=subprotocols, max_size=None)
    sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
    try:
        request = proto.connect()
        for name, value in headers:
            request.headers[name] = value
        proto.send_request(request)
        sock.sendall(b"".join(proto.data_to_send()))
        while proto.state is State.CONNECTING and proto.handshake_exc is None:
            data = sock.recv(65536)
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()
        if proto.handshake_exc is not None:
            raise proto.handshake_exc
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return Endpoint(sock, proto, pending=proto.events_received()[1:])   # [0] is the Response


class _Messages:
    """Whole messages out of data frames; a text is decoded frame by frame."""

    def __init__(self):
        self.kind = None
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.parts: list = []

    def add(self, frame: Frame):
        if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.BINARY:
            self.kind = frame.opcode
        if self.kind is Opcode.TEXT:
            self.parts.append(self.decoder.decode(frame.data, frame.fin))
        else:
            self.parts.append(bytes(frame.data))
        if not frame.fin:
            return None
        parts, self.parts = self.parts, []
        return (Opcode.TEXT, "".join(parts)) if self.kind is Opcode.TEXT else (Opcode.BINARY, b"".join(parts))
