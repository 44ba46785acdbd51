"""The WebSocket client side of the simulated mod_audio_fork: one `AudioPipe` per media bug.

Owns what `audio_pipe.cpp` + libwebsockets 4.1 do in the real module: the TCP connect, the opening
handshake (fork_handshake.py) byte for byte as libwebsockets writes it (``GET <path incl. query>``, ``Pragma``,
``Cache-Control``, ``Host`` without port, ``Origin: http://<host>``, ``Upgrade``, ``Connection``,
``Sec-WebSocket-Key``, ``Sec-WebSocket-Protocol: audio.drachtio.org``, ``Sec-WebSocket-Version: 13``,
then ``Authorization: Basic`` when a user and a password are given), the client-side checks of the
server's answer with libwebsockets' failure texts (``HS: ws upgrade response not 101``,
``HS: PROTOCOL malformed`` for a subprotocol that was not offered, none for an absent one, ...), the
state machine (connecting / connected / disconnecting), the text queue (drachtio concatenates pending
texts into one frame; jambonz sends one frame per text), the audio send buffer with its fixed size,
and the "writable callback" order: graceful-shutdown zero-length binary frame, else one text frame,
else the Close (1000, no reason) of a requested disconnect, else all buffered audio as one binary frame.

After the handshake the framing is websockets' sans-I/O `ClientProtocol`, created already open (the
handshake above is ours) and fed every byte from the server, those that came right behind the 101
included; the socket is a gevent socket. One writer greenlet (FS -> server) and one reader greenlet
(server -> FS) per pipe; both only touch the pipe's own state, and taking the protocol object's
outgoing bytes and writing them to the socket are serialised by the pipe's send lock. The protocol
object answers pings and echoes a server's Close itself; a frame it cannot parse (or a text that is
not UTF-8) drops the TCP connection without a Close.

Approximated (not in the captures): a connect timeout or any socket error before the handshake is
reported as ``Unable to connect`` (captured for "connection refused" only); a server that closes
during the handshake gives ``closed before established`` and a handshake that takes more than 10 s
``timeout`` (libwebsockets texts quoted from memory of its source, not captured). TLS (wss/https)
uses Python's ssl with the MOD_AUDIO_FORK_ALLOW_SELFSIGNED / SKIP_SERVER_CERT_HOSTNAME_CHECK flags;
ALLOW_EXPIRED is treated like ALLOW_SELFSIGNED. After we send Close we wait at most 5 s for the
server's Close before dropping the TCP connection. TCP keepalive is not emulated.
"""
from __future__ import annotations

import base64
import codecs
import logging
import os
import socket as _socket
from collections import deque

import gevent
from gevent import socket
from gevent.event import Event
from gevent.lock import Semaphore
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState, InvalidURI, ProtocolError
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from .fork_handshake import HandshakeError, basic_auth_header, build_request, check_response

log = logging.getLogger('switch_sim.fork_ws')

DEFAULT_SUBPROTOCOL = 'audio.drachtio.org'
HANDSHAKE_TIMEOUT = 10.0      # libwebsockets timeout_secs in audio_pipe.cpp
CLOSE_WAIT_TIMEOUT = 5.0
CONNECT_TIMEOUT = 10.0
MAX_HANDSHAKE_BYTES = 64 * 1024
MAX_RECV_TEXT = 65 * 1024 * 10  # audio_pipe.cpp MAX_RECV_BUF_SIZE: longer text messages are dropped

# AudioPipe states (audio_pipe.hpp LwsState_t)
IDLE, CONNECTING, CONNECTED, FAILED, DISCONNECTING, DISCONNECTED = range(6)

# notifications to the owner (audio_pipe.hpp NotifyEvent_t)
CONNECT_SUCCESS = 'connect_success'
CONNECT_FAIL = 'connect_fail'
CONNECTION_DROPPED = 'connection_dropped'
CONNECTION_CLOSED_GRACEFULLY = 'connection_closed_gracefully'
MESSAGE = 'message'
BINARY = 'binary'


class AudioPipe:
    """One WebSocket connection of one fork (audio_pipe.cpp). `callback(kind, payload)` runs in the
    pipe's greenlets and must not block for long."""

    def __init__(self, *, host: str, port: int, path: str, tls_flags: dict | None, flavor: str,
                 buffer_bytes: int, min_free: int, username: str | None = None, password: str | None = None,
                 callback=None, encode_audio=None, subprotocol: str | None = None, name: str = ''):
        self.host, self.port, self.path = host, port, path
        self.tls_flags = tls_flags
        self.flavor = flavor
        self.buffer_bytes = buffer_bytes
        self.min_free = min_free
        self.username = username if (username and password) else None
        self.password = password if (username and password) else None
        self.subprotocol = subprotocol or os.environ.get('MOD_AUDIO_FORK_SUBPROTOCOL_NAME') or DEFAULT_SUBPROTOCOL
        self.callback = callback or (lambda kind, payload: None)
        self.encode_audio = encode_audio or (lambda frames: b''.join(f for f in frames))
        self.name = name
        self.state = IDLE
        self.graceful = False
        # text queue: drachtio one string (concatenated), jambonz a list
        self._texts: deque[str] = deque()
        # audio buffer: frames waiting for the next writable callback, with their byte size
        self._audio: deque = deque()
        self.audio_buffered = 0
        self._wake = Event()
        self._send_lock = Semaphore()
        self._close_received = Event()
        self._sock = None
        self._ws: ClientProtocol | None = None
        self._greenlets: list[gevent.Greenlet] = []
        self.frames_sent = 0

    # --- called by the owner (media tick / API greenlets) ---------------------------------------

    def connect(self) -> None:
        self.state = CONNECTING
        self._greenlets.append(gevent.spawn(self._run))

    def buffer_for_sending(self, text: str) -> None:
        if self.state != CONNECTED:
            return
        if self.flavor == 'drachtio' and self._texts:
            self._texts[0] += text
        else:
            self._texts.append(text)
        self._wake.set()

    def close(self) -> None:
        if self.state != CONNECTED:
            return
        self.state = DISCONNECTING
        self._wake.set()

    def do_graceful_shutdown(self) -> None:
        self.graceful = True
        if self.state == CONNECTED:
            self._wake.set()

    def space_available(self) -> int:
        return self.buffer_bytes - self.audio_buffered

    def push_audio(self, frame, nbytes: int) -> None:
        self._audio.append(frame)
        self.audio_buffered += nbytes

    def reset_audio(self) -> None:
        self._audio.clear()
        self.audio_buffered = 0

    def request_write(self) -> None:
        if self.state == CONNECTED and self._audio:
            self._wake.set()

    def abort(self) -> None:
        """Drop the TCP connection at once, without a close handshake (simulator teardown)."""
        if self.state in (IDLE, CONNECTING):
            self.state = FAILED
        self._drop_socket()
        self._wake.set()

    # --- greenlets --------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            sock, ws, trailing = self._open()
        except HandshakeError as exc:
            if self.state == CONNECTING:
                self.state = FAILED
                self.callback(CONNECT_FAIL, exc.reason)
            return
        if self.state != CONNECTING:       # aborted while connecting
            _close_quietly(sock)
            return
        self._sock = sock
        self._ws = ws
        self.state = CONNECTED
        self.callback(CONNECT_SUCCESS, None)
        reader = gevent.spawn(self._reader, trailing)
        self._greenlets.append(reader)
        self._writer()

    def _open(self):
        host = '[%s]' % self.host if ':' in self.host else self.host
        try:
            uri = parse_uri('%s://%s:%d/' % ('ws' if self.tls_flags is None else 'wss', host, self.port))
            raw = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        except (InvalidURI, OSError, ValueError, UnicodeError):
            raise HandshakeError('Unable to connect')
        # no size limit: a text longer than MAX_RECV_TEXT is dropped by the reader (audio_pipe.cpp),
        # the connection is not failed with a Close 1009
        ws = ClientProtocol(uri, state=State.OPEN, max_size=None)
        sock = raw
        try:
            if self.tls_flags is not None:
                import ssl
                ctx = ssl.create_default_context()
                if self.tls_flags.get('allow_selfsigned') or self.tls_flags.get('allow_expired'):
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                if self.tls_flags.get('skip_hostname_check'):
                    ctx.check_hostname = False
                try:
                    sock = ctx.wrap_socket(raw, server_hostname=self.host)
                except (OSError, ssl.SSLError):
                    raise HandshakeError('Unable to connect')
            key = base64.b64encode(os.urandom(16)).decode('ascii')
            auth = basic_auth_header(self.username, self.password) if self.username else None
            sock.settimeout(HANDSHAKE_TIMEOUT)
            sock.sendall(build_request(self.host, self.path, key, self.subprotocol, auth))
            data = b''
            while b'\r\n\r\n' not in data:
                try:
                    chunk = sock.recv(4096)
                except _socket.timeout:
                    raise HandshakeError('timeout')
                if not chunk:
                    raise HandshakeError('closed before established')
                data += chunk
                if len(data) > MAX_HANDSHAKE_BYTES:
                    raise HandshakeError('HS: ws upgrade response not 101')
            head, trailing = data.split(b'\r\n\r\n', 1)
            check_response(head, key, self.subprotocol)
            sock.settimeout(None)
            # the kernel's send buffer is left as it is: on a real FreeSWITCH the module's socket
            # autotunes to megabytes (`ss -m` showed tb 3939840 with 400 KB queued to an app that
            # never read), so an app that stops reading fills the module's own buffer
            # (buffer_overrun) only minutes later. SWITCH_SIM_FORK_SNDBUF=<bytes> emulates a host
            # with a small tcp_wmem, where that happens within seconds.
            sndbuf = os.environ.get('SWITCH_SIM_FORK_SNDBUF')
            if sndbuf and sndbuf.isdigit():
                try:
                    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, int(sndbuf))
                except OSError:
                    pass
            return sock, ws, trailing
        except HandshakeError:
            _close_quietly(sock)
            raise
        except OSError:
            _close_quietly(sock)
            raise HandshakeError('closed before established')

    def _send(self, opcode: Opcode, payload: bytes = b'') -> bool:
        """One text, binary or Close (1000, no reason) frame; False when it could not go out."""
        with self._send_lock:
            ws, sock = self._ws, self._sock
            if ws is None or sock is None:
                return False
            try:
                if opcode is Opcode.TEXT:
                    ws.send_text(payload)
                elif opcode is Opcode.BINARY:
                    ws.send_binary(payload)
                else:
                    ws.send_close(1000)
            except (InvalidState, ProtocolError):
                return False
            return _write(sock, ws)

    def _flush(self) -> None:
        """Write what the protocol object queued while reading (a Pong, the echo of a Close)."""
        with self._send_lock:
            ws, sock = self._ws, self._sock
            if ws is not None and sock is not None:
                _write(sock, ws)

    def _writer(self) -> None:
        while self.state in (CONNECTED, DISCONNECTING):
            if not self._wake.wait(1.0):
                continue
            self._wake.clear()
            if self.state not in (CONNECTED, DISCONNECTING) or self._ws is None:
                break
            if self._ws.state is not State.OPEN:
                break
            if self.graceful:
                self._send(Opcode.BINARY)
                continue
            if self._texts:
                text = self._texts.popleft()
                if not self._send(Opcode.TEXT, text.encode('utf-8')):
                    break
                self._wake.set()  # one write per writable callback: get the rest next time
                continue
            if self.state == DISCONNECTING:
                self._send(Opcode.CLOSE)
                self._close_received.wait(CLOSE_WAIT_TIMEOUT)
                self._drop_socket()
                break
            if self._audio:
                frames = list(self._audio)
                self._audio.clear()
                self.audio_buffered = 0
                try:
                    payload = self.encode_audio(frames)
                except Exception:  # noqa: BLE001 - a bad frame must not kill the pipe
                    log.exception('%s: audio encoding failed', self.name)
                    continue
                if not self._send(Opcode.BINARY, payload):
                    break
                self.frames_sent += 1

    def _reader(self, data: bytes) -> None:
        """Until the server's Close, EOF or a frame the protocol object cannot parse; `data` is what
        came right behind the 101 response."""
        messages = _Messages()
        try:
            while True:
                ws = self._ws
                if ws is None:
                    break
                if data:
                    ws.receive_data(data)
                    frames = ws.events_received()
                    for frame in frames:
                        if frame.opcode is Opcode.CLOSE:
                            self._flush()
                            raise _Closed()
                        message = messages.add(frame)
                        if message is not None:
                            self.callback(*message)
                    if ws.parser_exc is not None:
                        break
                    if any(frame.opcode is Opcode.PING for frame in frames):
                        self._flush()
                sock = self._sock
                if sock is None:
                    break
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b''
                if not data:
                    break
        except (_Closed, UnicodeDecodeError):
            pass
        finally:
            self._close_received.set()
            self._finish()

    def _finish(self) -> None:
        was = self.state
        self._drop_socket()
        self.state = DISCONNECTED
        self._wake.set()
        if was == DISCONNECTING:
            self.callback(CONNECTION_CLOSED_GRACEFULLY, None)
        elif was == CONNECTED:
            self.callback(CONNECTION_DROPPED, None)

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            _close_quietly(sock)


class _Closed(Exception):
    pass


class _Messages:
    """Whole messages out of data frames: texts decoded frame by frame and dropped when longer than
    MAX_RECV_TEXT (audio_pipe.cpp), binaries joined."""

    def __init__(self):
        self.kind = None
        self.decoder = codecs.getincrementaldecoder('utf-8')()
        self.parts: list = []
        self.length = 0

    def add(self, frame):
        """(MESSAGE, str) or (BINARY, bytes) when `frame` ends a message, else None; raises
        UnicodeDecodeError for a text that is not UTF-8."""
        if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.BINARY:
            self.kind = frame.opcode
        elif frame.opcode is not Opcode.CONT:
            return None
        if self.kind is Opcode.TEXT:
            chunk = self.decoder.decode(frame.data, frame.fin)
            if self.length <= MAX_RECV_TEXT:
                self.parts.append(chunk)
                self.length += len(chunk)
            if not frame.fin:
                return None
            text, too_long = ''.join(self.parts), self.length > MAX_RECV_TEXT
            self.parts, self.length = [], 0
            return None if too_long else (MESSAGE, text)
        self.parts.append(frame.data)
        if not frame.fin:
            return None
        data, self.parts = b''.join(self.parts), []
        return BINARY, data


def _write(sock, ws: ClientProtocol) -> bool:
    data = b''.join(ws.data_to_send())
    if not data:
        return True
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _close_quietly(sock) -> None:
    try:
        sock.close()
    except OSError:
        pass
