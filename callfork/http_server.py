"""The HTTP server under the REST API: gevent's pywsgi with the limits a listener that any client can
reach needs (issue 12). `HttpServer(listen, app, max_connections=, idle_timeout_s=, max_body_bytes=,
fd_reserve=)`, from `[server] http_max_connections`, `http_idle_timeout_s`, `http_max_body_bytes`,
`fd_reserve`:

- **A connection cap.** At most `max_connections` connections are served at once (a gevent Pool;
  while it is full the server accepts nothing and new connections wait in the listen backlog, which
  costs the process no file descriptor). At start the cap is lowered, if need be, so that the
  descriptors open then (and FD_MARGIN more) plus one per HTTP connection still leave `fd_reserve`
  free: the calls' own sockets (the ESL socket server, the relay, webhook and document fetches)
  never starve behind HTTP clients. A connection accepted when fewer than `fd_reserve` descriptors are free
  anyway (calls used them) is answered 503 and closed at once: the kernel hands out the lowest free
  descriptor, so an accepted one numbered `limit - fd_reserve` or more means every lower one is taken.
- **A request-head deadline.** The request line and headers must arrive within `idle_timeout_s` of
  the connection opening or of the previous response on it: an idle kept-alive connection, or one
  trickling its headers a byte at a time (slowloris), is closed then (with a 408 if part of the head
  came). Any single read or write that stalls that long fails too (a body that stops coming: 400;
  a client that stops reading the response: dropped).
- **A body limit.** A declared body (`Content-Length`) over `max_body_bytes` is answered 413 before
  the application runs: up to DRAIN_LIMIT bytes of it are read and dropped first, so that a client
  that sends its whole body before it reads sees the answer, then the connection closes. A chunked
  body is read before the application runs (`buffer_chunked_bodies`): 413 once it passes the limit.
- **TCP_NODELAY** on every accepted connection: pywsgi writes a response's headers and its body with
  two send calls, and Nagle's algorithm held the body back until the client's delayed ACK of the
  headers: 40 ms per kept-alive request (BENCHMARKS.md, "HTTP keep-alive").

`health()` says what /healthz reports: connections open against the cap, descriptors open against
the limit, and the problems (at 90 % of the cap; inside the reserve; connections refused lately).
The error answers are JSON `{"api_id", "error"}`, as the API's own. With `reuse_port` (`callfork serve
--workers N`) the port is bound with SO_REUSEPORT and shared by the workers.
"""
from __future__ import annotations

import io
import json
import logging
import os
import resource
import socket
import time
import uuid

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from esl_app.outbound import reuse_port_listener

log = logging.getLogger("callfork.http")

DRAIN_LIMIT = 16 * 1024 * 1024   # bytes of a refused body read and dropped before the 413
NEAR_CAP = 0.9                   # /healthz reports trouble from this share of the connection cap
REFUSED_RECENTLY_S = 60.0        # ... and for this long after a connection was refused
WARN_EVERY_S = 60.0              # at most one log line per this many seconds about refusals
FD_MARGIN = 16                   # descriptors the process opens after the cap is set (its listener, ...)


def fd_limit() -> int:
    """The process's soft limit of open file descriptors (RLIMIT_NOFILE)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def open_fds() -> int | None:
    """File descriptors open in this process now (None where /proc/self/fd does not exist)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1   # less the one listdir itself opened
    except OSError:
        return None


def _error_body(message: str) -> bytes:
    return json.dumps({"api_id": str(uuid.uuid4()), "error": message}).encode()


def error_response(status: str, message: str) -> bytes:
    """A complete HTTP/1.1 error answer that closes the connection, JSON as the API's errors."""
    body = _error_body(message)
    return (f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _too_large(size: str, limit: int) -> str:
    return f"request body of {size} bytes is larger than the limit of {limit} bytes ([server] http_max_body_bytes)"


def buffer_chunked_bodies(application, limit: int):
    """WSGI middleware: a chunked request body is read here, up to `limit` bytes, and handed on
    with a Content-Length; a longer one is answered 413. (Werkzeug's own limit would cut a chunked
    body at `limit` bytes silently, and the API would parse what was left.)"""
    def app(environ, start_response):
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() != "chunked":
            return application(environ, start_response)
        stream, parts, size = environ["wsgi.input"], [], 0
        while size <= limit:
            chunk = stream.read(min(65536, limit + 1 - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        if size > limit:
            start_response("413 Content Too Large",
                           [("Content-Type", "application/json"), ("Connection", "close")])
            return [_error_body(_too_large("more than %d" % limit, limit))]
        environ["wsgi.input"] = io.BytesIO(b"".join(parts))
        environ["CONTENT_LENGTH"] = str(size)
        del environ["HTTP_TRANSFER_ENCODING"]
        return application(environ, start_response)
    return app


class _HeadTimeout(TimeoutError):
    """The request head did not arrive in time. An OSError: while the request line is read, pywsgi
    drops the connection quietly (an idle kept-alive connection); during the headers, 408."""


class _BodyTooLarge(ValueError):
    pass


class _Handler(WSGIHandler):
    """pywsgi's handler with the head deadline and the early body limit."""

    _head_timer = None

    def read_requestline(self):
        self._head_timer = gevent.Timeout.start_new(
            self.server.idle_timeout_s, _HeadTimeout("no complete request head in time"))
        return super().read_requestline()

    def read_request(self, raw_requestline):
        try:
            ok = super().read_request(raw_requestline)
        finally:
            self._stop_head_timer()
        limit = self.server.max_body_bytes
        if ok and self.content_length is not None and self.content_length > limit:
            if self.headers.get("Expect", "").lower() != "100-continue":   # else nothing was sent yet
                self._drop_body(min(self.content_length, DRAIN_LIMIT))
            raise _BodyTooLarge(_too_large(str(self.content_length), limit))
        return ok

    def handle_one_request(self):
        try:
            return super().handle_one_request()
        finally:
            self._stop_head_timer()   # a head that ended early (EOF, a request line too long)

    def _stop_head_timer(self):
        if self._head_timer is not None:
            self._head_timer.close()
            self._head_timer = None

    def _drop_body(self, size):
        try:
            with gevent.Timeout(self.server.idle_timeout_s, False):   # False: the time is up, quietly
                while size > 0:
                    chunk = self.rfile.read(min(size, 65536))
                    if not chunk:
                        return
                    size -= len(chunk)
        except OSError:
            pass   # the client stalled or left: the answer goes out (or not) and the connection closes

    def _handle_client_error(self, ex):
        # pywsgi's hook for a request it could not read (it answers a bare 400 otherwise)
        if isinstance(ex, _HeadTimeout):
            return ("408", error_response("408 Request Timeout", "the request head did not arrive within "
                                          f"{self.server.idle_timeout_s:g} s"))
        if isinstance(ex, _BodyTooLarge):
            return ("413", error_response("413 Content Too Large", str(ex)))
        return super()._handle_client_error(ex)


class HttpServer(WSGIServer):
    handler_class = _Handler

    def __init__(self, listen, application, *, max_connections: int = 1000, idle_timeout_s: float = 20.0,
                 max_body_bytes: int = 1 << 20, fd_reserve: int = 256, backlog: int = 1024,
                 reuse_port: bool = False):
        self.idle_timeout_s = idle_timeout_s
        self.max_body_bytes = max_body_bytes
        self.fd_reserve = fd_reserve
        self.fd_limit = fd_limit()
        self.max_connections = self._cap(max_connections)
        self.refused = 0            # connections closed at once: the descriptor reserve was reached
        self._refused_at = None
        self._warned_at = None
        listener = reuse_port_listener(listen, backlog) if reuse_port else listen
        super().__init__(listener, buffer_chunked_bodies(application, max_body_bytes),
                         **({} if reuse_port or not isinstance(listen, tuple) else {"backlog": backlog}),
                         spawn=Pool(self.max_connections), log=None, handler_class=_Handler)

    def _cap(self, wanted: int) -> int:
        in_use = open_fds() or 0
        room = self.fd_limit - self.fd_reserve - in_use - FD_MARGIN
        if room >= wanted:
            return wanted
        cap = max(1, room)
        log.warning("HTTP connections capped at %d instead of %d: %d file descriptors open of a limit of %d, "
                    "and %d kept for calls ([server] fd_reserve); raise the limit (ulimit -n) for more",
                    cap, wanted, in_use, self.fd_limit, self.fd_reserve)
        return cap

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return len(self.pool)

    def handle(self, sock, address):
        if sock.fileno() >= self.fd_limit - self.fd_reserve:
            self._refuse(sock, address)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.idle_timeout_s)
        super().handle(sock, address)

    def _refuse(self, sock, address) -> None:
        self.refused += 1
        now = self._refused_at = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("HTTP connection from %s refused: fewer than %d file descriptors free (limit %d); "
                        "%d refused so far", address[0] if address else "?", self.fd_reserve, self.fd_limit,
                        self.refused)
        try:
            sock.settimeout(1)
            sock.sendall(error_response("503 Service Unavailable",
                                        "callfork is short of file descriptors; try again later"))
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0)
            sock.recv(65536)   # the request, if it came already: closing with it unread would reset
        except OSError:
            pass
        finally:
            sock.close()

    def health(self) -> tuple[dict, list]:
        """(figures, problems) for /healthz."""
        conns, fds = self.connections, open_fds()
        problems = []
        if conns > 1 and conns >= self.max_connections * NEAR_CAP:   # (the asking one counts too)
            problems.append(f"{conns} HTTP connections open, at most {self.max_connections} are served "
                            "([server] http_max_connections)")
        if fds is not None and fds >= self.fd_limit - self.fd_reserve:
            problems.append(f"{fds} file descriptors open of a limit of {self.fd_limit}: inside the "
                            f"{self.fd_reserve} kept for calls ([server] fd_reserve)")
        if self._refused_at is not None and time.monotonic() - self._refused_at < REFUSED_RECENTLY_S:
            problems.append(f"HTTP connections refused for want of file descriptors ({self.refused} so far)")
        figures = {"http_connections": conns, "http_max_connections": self.max_connections,
                   "open_fds": fds, "fd_limit": self.fd_limit}
        return figures, problems
