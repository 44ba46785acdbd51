"""A WebSocket app server written by hand for tests of the client side (audio_fork.app_connection):
it reads the upgrade request, answers whatever a test asks (a 101 computed here, a refusal, garbage,
silence), then runs a test's script on the socket. Frames are built and read here, byte by byte,
so nothing of the code under test checks itself."""
import base64
import hashlib
import struct

import gevent
import gevent.event
from gevent.server import StreamServer

from harness import free_port

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    head = bytes([b0, (0x80 if masked else 0) | n]) if n < 126 else bytes([b0, (0x80 if masked else 0) | 126]) + struct.pack("!H", n)
    return head + (b"\0\0\0\0" if masked else b"") + payload


def read_client_frames(sock, count: int, timeout: float = 5.0, out: list | None = None) -> list:
    """Up to `count` frames the client sent, as (opcode, fin, unmasked payload), appended to `out`
    as each arrives; every client frame must be masked (RFC 6455 5.3). Stops early at EOF."""
    sock.settimeout(timeout)
    buf = b""
    out = [] if out is None else out
    while len(out) < count:
        while True:
            if len(buf) >= 2:
                n = buf[1] & 0x7F
                pos = 2
                if n == 126 and len(buf) >= 4:
                    n, pos = struct.unpack("!H", buf[2:4])[0], 4
                if n < 127 and len(buf) >= pos + 4 + n:
                    break
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buf += chunk
        assert buf[1] & 0x80, "client frames are masked"
        key = buf[pos:pos + 4]
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(buf[pos + 4:pos + 4 + n]))
        out.append((buf[0] & 0x0F, bool(buf[0] & 0x80), payload))
        buf = buf[pos + 4 + n:]
    return out


class RawApp:
    """A TCP server that reads the upgrade request and answers as `answer(request_text, key)` says;
    then `script(sock)` runs with the connection."""

    def __init__(self, answer=None, script=None):
        self.requests = []
        self.socks = []
        self.answer = answer or self.accept
        self.script = script
        self._stopped = gevent.event.Event()
        self.server = StreamServer(("127.0.0.1", free_port()), self._handle)
        self.server.start()
        self.url = f"ws://127.0.0.1:{self.server.server_port}/app?x=1"

    @staticmethod
    def accept(request: str, key: str, extra: str = "") -> bytes:
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n").encode()

    def _handle(self, sock, _peer):
        self.socks.append(sock)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return
            data += chunk
        request = data.decode("latin-1")
        self.requests.append(request)
        key = next(line.split(":", 1)[1].strip() for line in request.split("\r\n")
                   if line.lower().startswith("sec-websocket-key:"))
        answer = self.answer(request, key)
        if answer is None:
            self._stopped.wait(30)  # never answers (until the server stops)
            return
        sock.sendall(answer)
        if self.script is not None:
            self.script(sock)

    def stop(self):
        self._stopped.set()
        self.server.stop(timeout=1)
