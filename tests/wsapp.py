"""A real app-side WebSocket server for tests (gevent StreamServer + websockets' sans-I/O
ServerProtocol, through tests/ws_endpoint.py), written independently of audio_fork's own server
code. It records the handshake and every message it receives, can send text (or several frames in
one write), close with a code, refuse the upgrade with an HTTP status, or stop reading (a slow
app). `close_code` is the code of the peer's Close, 1006 when the connection ended without one."""
from __future__ import annotations

import socket
import time

from gevent.event import Event
from gevent.server import StreamServer
from websockets.frames import Opcode
from websockets.server import ServerProtocol

from ws_endpoint import Endpoint


class AppConnection(Endpoint):
    def __init__(self, sock):
        super().__init__(sock, ServerProtocol(max_size=None))
        self.path = None
        self.headers: list = []
        self.messages: list = []       # str (text) or bytes (binary), in arrival order
        self.times: list = []          # time.monotonic() of each message
        self.close_code = None
        self.pings = 0
        self.closed = Event()
        self._changed = Event()

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def texts(self):
        return [m for m in self.messages if isinstance(m, str)]

    def wait_for(self, predicate, timeout=5.0):
        """Wait until predicate(self) is true; returns it, or raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"condition not met within {timeout}s; {len(self.messages)} messages, "
                                     f"closed={self.closed.is_set()} code={self.close_code}")
            self._changed.clear()
            if predicate(self):
                continue
            self._changed.wait(min(left, 0.5))

    def close(self, code=1000, reason=""):
        self.send_close(code, reason)

    def answer_upgrade(self, response) -> bool:
        """Send the answer to the upgrade request; True when it opened the connection, else the
        connection is over."""
        try:
            self.answer(response)
        except OSError:
            pass
        else:
            if response.status_code == 101:
                return True
        self.closed.set()
        self._changed.set()
        self.abort()
        return False

    def serve(self):
        """Record what the relay sends until its Close (or its answer to ours), EOF or a protocol
        error."""
        try:
            while True:
                events = self.read()
                if events is None:
                    break
                now = time.monotonic()
                for kind, data in events:
                    if kind is Opcode.TEXT or kind is Opcode.BINARY:
                        self.messages.append(data)
                        self.times.append(now)
                    elif kind is Opcode.PING:
                        self.pings += 1
                    elif kind is Opcode.CLOSE:
                        self.close_code = data.code
                    self._changed.set()
                if self.close_code is not None:
                    break
        finally:
            if self.close_code is None:
                self.close_code = 1006
            self.closed.set()
            self._changed.set()
            self.abort()


class AppServer:
    def __init__(self, reject_status=None, read=True, rcvbuf=None):
        self.reject_status = reject_status
        self.read = read
        self.rcvbuf = rcvbuf
        self.connections: list = []
        self.requests: list = []
        self._new = Event()
        self.stalled = Event()   # set on stop: a non-reading app's connections end then
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(64)
        self.server = StreamServer(lsock, self._handle)

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.stalled.set()
        self.server.stop(timeout=1)

    @property
    def url(self):
        host, port = self.server.address[:2]
        return f"ws://{host}:{port}/app"

    def wait_connection(self, timeout=5.0) -> AppConnection:
        deadline = time.monotonic() + timeout
        while not self.connections:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no app connection")
            self._new.clear()
            if not self.connections:
                self._new.wait(left)
        return self.connections[0]

    def _handle(self, sock, _addr):
        conn = AppConnection(sock)
        request = conn.read_request()
        if request is None:
            conn.abort()
            return
        conn.path = request.path
        conn.headers = list(request.headers.raw_items())
        self.requests.append(conn)
        if self.reject_status:
            response = conn.proto.reject(self.reject_status, "refused by the test app\n")
        else:
            response = conn.proto.accept(request)
        if not conn.answer_upgrade(response):
            return
        self.connections.append(conn)
        self._new.set()
        if not self.read:
            self.stalled.wait()   # a slow app: never reads again (until stop)
        conn.serve()
