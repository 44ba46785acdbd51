"""A real HTTP receiver for tests: gevent pywsgi on a free loopback port, recording every request.

Behaviour is a function `responder(request) -> Reply` (default: 200, empty body). A Reply can be
delayed (slow receiver), hold until released (hung receiver) or stream a large body. The receiver can
be stopped (connections refused) and started again on the same port. `wait_for(predicate, timeout)`
waits on a condition instead of sleeping.
"""
import time
from http import HTTPStatus
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b''
    content_type: str = 'text/plain'
    headers: dict = field(default_factory=dict)
    delay: float = 0.0             # seconds before answering (a slow receiver)
    hold: bool = False             # wait until receiver.release() (at most hold_timeout), then answer
    hold_status: int = 503         # status answered after a hold is released
    stream_bytes: int = 0          # >0: stream this many bytes in 64 KiB chunks, no Content-Length
    declared_length: bool = False  # with stream_bytes: send Content-Length too
    chunk_delay: float = 0.0       # with stream_bytes: pause before each chunk (a trickling body)
    chunk_size: int = 65536


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict           # lower-case names
    body: bytes
    received_at: float
    answered_status: int = None  # set once the response started (None: never answered)

    @property
    def form(self):
        return dict(parse_qsl(self.body.decode('utf-8'), keep_blank_values=True))

    @property
    def form_pairs(self):
        return parse_qsl(self.body.decode('utf-8'), keep_blank_values=True)

    @property
    def args(self):
        return dict(parse_qsl(self.query, keep_blank_values=True))


class HttpReceiver:
    def __init__(self, responder=None, hold_timeout=30.0):
        self.responder = responder or (lambda req: Reply())
        self.hold_timeout = hold_timeout
        self.requests = []
        self.bytes_streamed = 0
        self.port = 0
        self._server = None
        self._changed = gevent.event.Event()
        self._release = gevent.event.Event()

    # lifecycle
    def start(self):
        """Listen (on `port`, or a free one the first time); a receiver already listening stays as it is."""
        if self._server is not None:
            return self
        self._server = WSGIServer(('127.0.0.1', self.port), self._app, log=None, error_log=None)
        self._server.start()
        self.port = self._server.server_port
        return self

    def stop(self):
        """Close the listener: new connections are refused until start() again (same port)."""
        if self._server is not None:
            self._server.stop(timeout=1)
            self._server = None

    def release(self):
        self._release.set()

    def url(self, path='/hook'):
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.release()
        self.stop()

    # waiting
    def wait_for(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.wait(remaining)

    def answered(self, status=200):
        return [r for r in self.requests if r.answered_status == status]

    # the WSGI app
    def _app(self, environ, start_response):
        length = int(environ.get('CONTENT_LENGTH') or 0)
        body = environ['wsgi.input'].read(length) if length else b''
        headers = {k[5:].replace('_', '-').lower(): v for k, v in environ.items() if k.startswith('HTTP_')}
        if environ.get('CONTENT_TYPE'):
            headers['content-type'] = environ['CONTENT_TYPE']
        request = Request(environ['REQUEST_METHOD'], environ.get('PATH_INFO', ''), environ.get('QUERY_STRING', ''),
                          headers, body, time.time())
        self.requests.append(request)
        self._changed.set()
        reply = self.responder(request)
        status = reply.status
        if reply.delay:
            gevent.sleep(reply.delay)   # the server's configured delay before it answers
        if reply.hold:
            self._release.wait(self.hold_timeout)
            status = reply.hold_status
        out_headers = [('Content-Type', reply.content_type)] + list(reply.headers.items())
        if reply.stream_bytes:
            if reply.declared_length:
                out_headers.append(('Content-Length', str(reply.stream_bytes)))
            start_response(_status_line(status), out_headers)
            request.answered_status = status
            self._changed.set()
            return self._stream(reply)
        out_headers.append(('Content-Length', str(len(reply.body))))
        start_response(_status_line(status), out_headers)
        request.answered_status = status
        self._changed.set()
        return [reply.body]

    def _stream(self, reply):
        total = reply.stream_bytes
        chunk = b'x' * reply.chunk_size
        sent = 0
        while sent < total:
            if reply.chunk_delay:
                gevent.sleep(reply.chunk_delay)   # the server's configured delay between chunks
            piece = chunk[:min(len(chunk), total - sent)]
            sent += len(piece)
            self.bytes_streamed += len(piece)
            yield piece


def _status_line(status):
    try:
        return '%d %s' % (status, HTTPStatus(status).phrase)
    except ValueError:
        return '%d Unknown' % status
