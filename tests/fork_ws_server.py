"""A real WebSocket server for tests of the mod_audio_fork emulation (gevent StreamServer + wsproto).

It plays the part of the capture machine's test server: accepts the subprotocol
`audio.drachtio.org` (echoed), records the raw request line and headers in order, every message with
its monotonic receive time, and the close code. Paths change the handshake answer:
`/noproto` (101 without a subprotocol), `/wrongproto` (101 with another subprotocol),
`/reject403` (HTTP 403). `slow_paths` are never read after the handshake (with a tiny receive
buffer), to make the client's send buffer overflow.
"""
from __future__ import annotations

import base64
import hashlib
import socket as _socket
import time

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.server import StreamServer
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
SUBPROTOCOL = 'audio.drachtio.org'


class WSConn:
    def __init__(self, sock, path):
        self.sock = sock
        self.path = path
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
        self.ws: Connection | None = None
        self._lock = Semaphore()

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

    def _send(self, event):
        with self._lock:
            if self.ws is None or self.ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                return
            data = self.ws.send(event)
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def send_text(self, text: str):
        self._send(TextMessage(data=text))

    def send_bytes(self, data: bytes):
        self._send(BytesMessage(data=data))

    def close(self, code=1000, reason=''):
        self.close_initiator = self.close_initiator or 'server'
        self._send(CloseConnection(code=code, reason=reason))

    def _pulse(self):
        ev = self.changed
        self.changed = Event()
        ev.set()

    def wait_until(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.wait(min(left, 0.5))
        return True


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
            try:
                c.sock.close()
            except OSError:
                pass
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
        sock.settimeout(10)
        data = b''
        try:
            while b'\r\n\r\n' not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                data += chunk
        except OSError:
            return
        head, rest = data.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        path = lines[0].split(' ')[1] if len(lines[0].split(' ')) > 1 else '/'
        conn = WSConn(sock, path)
        conn.request_line = lines[0]
        conn.headers = [tuple(x.strip() for x in line.split(':', 1)) for line in lines[1:] if ':' in line]
        self.connections.append(conn)
        ev = self.new_connection
        self.new_connection = Event()
        ev.set()
        key = conn.header('Sec-WebSocket-Key') or ''
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        bare = path.split('?', 1)[0]
        if bare == '/reject403':
            conn.status = 403
            sock.sendall(b'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
            sock.close()
            conn.closed.set()
            conn._pulse()
            return
        resp = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade',
                'Sec-WebSocket-Accept: %s' % accept]
        if bare == '/wrongproto':
            resp.append('Sec-WebSocket-Protocol: other.protocol')
        elif bare != '/noproto':
            resp.append('Sec-WebSocket-Protocol: %s' % SUBPROTOCOL)
        conn.status = 101
        conn.ws = Connection(ConnectionType.SERVER, trailing_data=rest)
        sock.sendall(('\r\n'.join(resp) + '\r\n\r\n').encode())
        conn.opened_at = time.monotonic()
        sock.settimeout(None)
        if bare in self.slow_paths:
            conn.closed.wait(30)
            return
        self._read_loop(conn)

    def _read_loop(self, conn: WSConn):
        sock = conn.sock
        text_parts, bin_parts = [], []
        try:
            self._process(conn, b'', text_parts, bin_parts)
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b''
                if not data:
                    break
                if self._process(conn, data, text_parts, bin_parts):
                    break
        finally:
            conn.closed.set()
            conn._pulse()
            try:
                sock.close()
            except OSError:
                pass

    def _process(self, conn, data, text_parts, bin_parts):
        if data:
            conn.ws.receive_data(data)
        done = False
        for ev in conn.ws.events():
            now = time.monotonic()
            if isinstance(ev, TextMessage):
                text_parts.append(ev.data)
                if ev.message_finished:
                    conn.messages.append((now, 'text', ''.join(text_parts)))
                    text_parts.clear()
            elif isinstance(ev, BytesMessage):
                bin_parts.append(bytes(ev.data))
                if ev.message_finished:
                    conn.messages.append((now, 'binary', b''.join(bin_parts)))
                    bin_parts.clear()
            elif isinstance(ev, Ping):
                conn._send(ev.response())
            elif isinstance(ev, CloseConnection):
                conn.close_code = ev.code
                conn.close_reason = ev.reason
                if conn.close_initiator is None:
                    conn.close_initiator = 'client'
                    conn._send(ev.response())
                done = True
            conn._pulse()
        return done


def start_server(**kw) -> ForkWSServer:
    return ForkWSServer(**kw).start()


def spawn_later(seconds, fn, *args):
    return gevent.spawn_later(seconds, fn, *args)
