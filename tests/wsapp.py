"""A real app-side WebSocket server for tests (gevent StreamServer + wsproto), written
independently of audio_fork's own server code. It records the handshake and every message it
receives, can send text, close with a code, refuse the upgrade with an HTTP status, or stop
reading (a slow app)."""
from __future__ import annotations

import socket
import time

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.server import StreamServer
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection,
                            Request, TextMessage)


class AppConnection:
    def __init__(self, sock):
        self.sock = sock
        self.ws = WSConnection(ConnectionType.SERVER)
        self.path = None
        self.headers: list = []
        self.messages: list = []       # str (text) or bytes (binary), in arrival order
        self.times: list = []          # time.monotonic() of each message
        self.close_code = None
        self.pings = 0
        self.closed = Event()
        self._changed = Event()
        self._lock = Semaphore()

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

    def _send(self, event):
        with self._lock:
            self.sock.sendall(self.ws.send(event))

    def send_text(self, text: str):
        self._send(TextMessage(data=text))

    def close(self, code=1000, reason=""):
        self._send(CloseConnection(code=code, reason=reason))


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
        buf_parts = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    conn.ws.receive_data(None)
                else:
                    conn.ws.receive_data(data)
                for ev in conn.ws.events():
                    if isinstance(ev, Request):
                        conn.path = ev.target
                        conn.headers = [(k.decode(), v.decode()) for k, v in ev.extra_headers]
                        self.requests.append(conn)
                        if self.reject_status:
                            conn._send(RejectConnection(status_code=self.reject_status))
                            return
                        conn._send(AcceptConnection())
                        self.connections.append(conn)
                        self._new.set()
                        if not self.read:
                            self.stalled.wait()   # a slow app: never reads again (until stop)
                    elif isinstance(ev, (TextMessage, BytesMessage)):
                        buf_parts.append(ev.data)
                        if ev.message_finished:
                            msg = "".join(buf_parts) if isinstance(ev, TextMessage) else b"".join(buf_parts)
                            buf_parts = []
                            conn.messages.append(msg)
                            conn.times.append(time.monotonic())
                            conn._changed.set()
                    elif isinstance(ev, Ping):
                        conn.pings += 1
                        conn._changed.set()
                        conn._send(ev.response())
                    elif isinstance(ev, CloseConnection):
                        conn.close_code = ev.code
                        try:
                            conn._send(ev.response())
                        except Exception:  # already closing from our side
                            pass
                        return
                if not data:
                    return
        except OSError:
            return
        finally:
            conn.closed.set()
            conn._changed.set()
            try:
                sock.close()
            except OSError:
                pass
