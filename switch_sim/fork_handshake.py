"""The opening handshake of the simulated mod_audio_fork, byte for byte as libwebsockets 4.1 writes
it for `audio_pipe.cpp` (see fork_ws.py for the header order), and libwebsockets' checks of the
server's answer with its failure texts (the texts the module puts in `connect_failed`)."""
from __future__ import annotations

import base64
import hashlib

__all__ = ["HandshakeError", "basic_auth_header", "build_request", "check_response"]

WS_GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'


class HandshakeError(Exception):
    """The connection failed; `reason` is the text the module puts in connect_failed."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def basic_auth_header(user: str, password: str) -> str | None:
    """`dch_lws_http_basic_auth_gen` into a 128-byte buffer: None when it does not fit."""
    n, m = len(user.encode()), len(password.encode())
    if 128 < 6 + (4 * (n + m + 1)) // 3 + 1:
        return None
    raw = ('%s:%s' % (user, password)).encode()
    if len(raw) >= 126:
        return None
    return 'Basic ' + base64.b64encode(raw).decode('ascii')


def build_request(host: str, path: str, key: str, subprotocol: str, authorization: str | None) -> bytes:
    lines = ['GET %s HTTP/1.1' % path, 'Pragma: no-cache', 'Cache-Control: no-cache', 'Host: %s' % host,
             'Origin: http://%s' % host, 'Upgrade: websocket', 'Connection: Upgrade',
             'Sec-WebSocket-Key: %s' % key, 'Sec-WebSocket-Protocol: %s' % subprotocol,
             'Sec-WebSocket-Version: 13']
    if authorization:
        lines.append('Authorization: %s' % authorization)
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1', 'replace')


def check_response(head: bytes, key: str, subprotocol: str) -> None:
    """Raise HandshakeError with libwebsockets' text if the server's answer is not acceptable."""
    text = head.decode('latin-1')
    lines = text.split('\r\n')
    parts = lines[0].split(' ', 2)
    status = parts[1] if len(parts) > 1 else ''
    headers = {}
    for line in lines[1:]:
        if ':' not in line:
            continue
        name, value = line.split(':', 1)
        headers.setdefault(name.strip().lower(), value.strip())
    if status.startswith('401'):
        raise HandshakeError('HS: ws upgrade unauthorized')
    if not status.startswith('101'):
        raise HandshakeError('HS: ws upgrade response not 101')
    if not headers.get('sec-websocket-accept'):
        raise HandshakeError('HS: ACCEPT missing')
    upgrade = headers.get('upgrade')
    if upgrade is None:
        raise HandshakeError('HS: UPGRADE missing')
    if upgrade.lower() != 'websocket':
        raise HandshakeError('HS: Upgrade to something other than websocket')
    connection = headers.get('connection')
    if connection is None:
        raise HandshakeError('HS: CONNECTION missing')
    if connection.lower() != 'upgrade':
        raise HandshakeError('HS: UPGRADE malformed')
    proto = headers.get('sec-websocket-protocol')
    if proto and proto not in [p.strip() for p in subprotocol.split(',')]:
        raise HandshakeError('HS: PROTOCOL malformed')
    if headers.get('sec-websocket-extensions'):
        raise HandshakeError('HS: EXT: unknown ext')
    expected = base64.b64encode(hashlib.sha1(key.encode('ascii') + WS_GUID).digest()).decode('ascii')
    if headers['sec-websocket-accept'] != expected:
        raise HandshakeError('HS: Accept hash wrong')
