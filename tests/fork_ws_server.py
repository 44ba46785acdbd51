"""A real WebSocket server for tests of the mod_audio_fork emulation (gevent StreamServer + websockets'
sans-I/O ServerProtocol, through tests/ws_endpoint.py).

It plays the part of the capture machine's test server: answers with the subprotocol
`audio.drachtio.org` (whatever the client offered), records the request line and headers in order,
every message with its monotonic receive time, and the close code. Paths change the handshake
answer: `/noproto` (101 without a subprotocol), `/wrongproto` (101 with another subprotocol),
`/reject403` (HTTP 403). `slow_paths` are never read after the handshake (with a tiny receive
buffer), to make the client's send buffer overflow.
"""
from __future__ import annotations

import socket as _socket
import time

import gevent
from gevent.event import Event
from gevent.server import StreamServer
from websockets.exceptions import InvalidState
from websockets.frames import Opcode
from websockets.server import ServerProtocol

from ws_endpoint import Endpoint

SUBPROTOCOL = 'audio.drachtio.org'
ANSWERED_SUBPROTOCOL = {'/noproto': None, '/wrongproto': 'other.protocol'}


class WSConn(Endpoint):
    def __init__(self, sock):
        super().__init__(sock, ServerProtocol(max_size=None))
        self.request = None
        self.path = None
        self.request_line = ''
        self.headers: list[tuple[str, str]] = []
        self.status = None
        self.opened_at = None
        self.messages: list[tuple[float, str, object]] = []   # (t, 'text'|'binary', data)
        self.close_code = None
        self.close_reason = None
        self.close_initiator = None
        self.closed = Event()
        self.changed = Event()

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def texts(self):
        return [d for _, k, d in self.messages if k == 'text']

    @property
    def binaries(self):
        return [(t, d) for t, k, d in self.messages if k == 'binary']

    def send_text(self, text: str):
        self._send_if_open(super().send_text, text)

    def send_bytes(self, data: bytes):
        self._send_if_open(self.send_binary, data)

    def close(self, code=1000, reason=''):
        self.close_initiator = self.close_initiator or 'server'
        self._send_if_open(self.send_close, code, reason)

    def wait_until(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.wait(min(left, 0.5))
        return True

    def read_handshake(self) -> bool:
        """Read the upgrade request and record it; False when there was none."""
        self.sock.settimeout(10)
        request = self.read_request()
        if request is None:
            return False
        self.request = request
        self.path = request.path
        self.request_line = 'GET %s HTTP/1.1' % request.path   # the only request line websockets parses
        self.headers = list(request.headers.raw_items())
        return True

    def accept(self, subprotocol):
        response = self.proto.accept(self.request)
        if subprotocol:
            response.headers['Sec-WebSocket-Protocol'] = subprotocol
        self.answer(response)
        self.status = response.status_code
        self.opened_at = time.monotonic()
        self.sock.settimeout(None)

    def reject(self, status):
        self.status = status
        try:
            self.answer(self.proto.reject(status, 'rejected by the test server\n'))
        except OSError:
            pass
        self.abort()
        self.closed.set()
        self._pulse()

    def serve(self):
        """Record what the client sends until its Close (or ours answered), EOF or a protocol error."""
        try:
            while True:
                events = self.read()
                if events is None:
                    break
                now = time.monotonic()
                for kind, data in events:
                    if kind is Opcode.TEXT:
                        self.messages.append((now, 'text', data))
                    elif kind is Opcode.BINARY:
                        self.messages.append((now, 'binary', data))
                    elif kind is Opcode.CLOSE:
                        self.close_code, self.close_reason = data.code, data.reason
                        self.close_initiator = self.close_initiator or 'client'
                    self._pulse()
                if any(kind is Opcode.CLOSE for kind, _ in events):
                    break
        finally:
            self.closed.set()
            self._pulse()
            self.abort()

    def _send_if_open(self, send, *args):
        try:
            send(*args)
        except (InvalidState, OSError):
            pass

    def _pulse(self):
        ev = self.changed
        self.changed = Event()
        ev.set()


class ForkWSServer:
    def __init__(self, slow_paths=()):
        self.connections: list[WSConn] = []
        self.new_connection = Event()
        self.slow_paths = set(slow_paths)
        self.server = StreamServer(('127.0.0.1', 0), self._handle)

    def start(self):
        if self.slow_paths:
            # a tiny receive window for every accepted socket (inherited from the listener)
            self.server.init_socket()
            self.server.socket.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 4096)
        self.server.start()
        return self

    def stop(self):
        for c in list(self.connections):
            c.abort()
        self.server.stop(timeout=1)

    @property
    def port(self):
        return self.server.server_port

    def url(self, path):
        return 'ws://127.0.0.1:%d%s' % (self.port, path)

    def wait_connection(self, count=1, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.connections) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ev = self.new_connection
            ev.wait(min(left, 0.5))
        return self.connections[count - 1]

    def _handle(self, sock, addr):
        conn = WSConn(sock)
        if not conn.read_handshake():
            conn.abort()
            return
        self.connections.append(conn)
        ev = self.new_connection
        self.new_connection = Event()
        ev.set()
        bare = conn.path.split('?', 1)[0]
        if bare == '/reject403':
            conn.reject(403)
            return
        conn.accept(ANSWERED_SUBPROTOCOL.get(bare, SUBPROTOCOL))
        if bare in self.slow_paths:
            conn.closed.wait(30)
            return
        conn.serve()


def start_server(**kw) -> ForkWSServer:
    return ForkWSServer(**kw).start()


def spawn_later(seconds, fn, *args):
    return gevent.spawn_later(seconds, fn, *args)
