"""The I/O floor: the leanest relay anyone could write for the relay benchmark's exact wire traffic,
run in the same harness as callfork's relay (same load generator, sink, N and window; getrusage of
this process), so "relay CPU / io floor" says how much of callfork's per-frame cost is the I/O
pattern itself (one recv + one send + one event-loop wake-up per 20 ms frame per stream, plus the
loopback TCP work the kernel charges to the sender) rather than Python work callfork could avoid.

What it is (one process, one thread, `select.epoll`, plain Python; no gevent, no WebSocket library
on the data path):
- control: the JSON-lines protocol of `bench.common.Child` (`start`, `cpu`, `stop_all`, `exit`),
  served from the same epoll loop; stdin EOF (the orchestrator is gone) ends the process;
- `start(n, sink_url, rate)`: per stream a blocking WebSocket connect to the sink as the app
  (`common.ws_client_connect`, setup only), then `uuid_audio_fork <uuid> start
  ws://127.0.0.1:<port>/fork/<sid> mono 8k|16k audio_fork <metadata>` to the load generator (the
  FreeSWITCH stand-in); the reply is deferred until every fork has upgraded and sent its first
  frame (the metadata; the load generator then counts it connected), or 60 s;
- the fork side: accept, a minimal RFC 6455 upgrade (subprotocol `audio.drachtio.org` required,
  `Sec-WebSocket-Accept`), then the Vobiz `start` message to the app;
- per fork readable event: one `recv`; frames parsed by a fixed-shape loop (client frames must be
  masked; binary -> media, text = metadata ignored, ping -> pong, close -> close both sides,
  fragments = protocol error); payload unmasked by `websockets.speedups.apply_mask`; the media text
  is `b2a_base64` + %-formatting of the same pre-escaped Vobiz `media` template callfork uses, as
  bytes; the app frame is masked with a key taken from a pooled `os.urandom` buffer (RFC 6455 wants
  unpredictable keys; one getrandom syscall per 1024 frames) and written with one non-blocking `send`
  per recv (= one per frame unless this process is behind). What the kernel does not take waits in
  a per-stream buffer flushed on EPOLLOUT; past 1 MiB media is dropped (`app_dropped`).
- one-way only: a bidirectional run (the app's playAudio paced back) is refused.

Counters (`cpu`): frames_in, recvs, sends, epoll wake-ups, so the report can show syscalls and
wake-ups per frame. `python_work` (called after the window) times the per-frame Python of the data
path on in-memory frames, without any syscall: what is left of the floor is I/O.
Bounded everywhere: loops end with their data, the start wait has a deadline, the main loop polls
with a 0.5 s timeout and ends on `exit` or stdin EOF; errors go to stderr
(the harness's log file), one broken stream is closed without touching the others.

`python -m bench.io_floor <switch-port>` (started by bench/relay.py).
"""
from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import os
import select
import socket
import sys
import time
import uuid as uuidlib
from binascii import b2a_base64

from websockets.speedups import apply_mask

from bench import common

log = logging.getLogger("bench.io_floor")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_IN = select.EPOLLIN
_INOUT = select.EPOLLIN | select.EPOLLOUT
_OUT_CAP = 1 << 20           # bytes waiting for one app socket before media is dropped
_HANDSHAKE_CAP = 16384
_INBUF_CAP = 1 << 20
_START_WAIT_S = 60.0


class Stream:
    __slots__ = ("sid", "app", "app_fd", "fork", "fork_fd", "inbuf", "out", "seq", "chunk", "fmt",
                 "start_ms", "open")

    def __init__(self, sid: str, app: socket.socket, fmt: bytes):
        self.sid = sid
        self.app = app
        self.app_fd = app.fileno()
        self.fork = None
        self.fork_fd = -1
        self.inbuf = b""
        self.out = b""               # app bytes the kernel has not taken yet
        self.seq = 1                 # `start` was sequenceNumber 0
        self.chunk = 0
        self.fmt = fmt
        self.start_ms = int(time.time() * 1000)
        self.open = True


class IoFloor:
    def __init__(self, switch_port: int):
        self.ep = select.epoll()
        self.handlers: dict = {}     # fd -> callable(events)
        self.streams: dict = {}      # sid -> Stream
        self.pending_forks: dict = {}  # fd -> [sock, handshake bytes]
        self.running = True
        self.frames_in = 0
        self.recvs = 0
        self.sends = 0
        self.wakeups = 0
        self.app_dropped = 0
        self.protocol_errors = 0
        self.errors = 0
        self.attached = 0            # forks upgraded
        self.ready = 0               # forks that sent their first frame
        self.rate = 8000
        self.pending_start = None    # (control sock, target attached, deadline, t0, failed, errors)
        self.masks = b""
        self.mask_pos = 0
        self.lsock = self._listen()
        self.port = self.lsock.getsockname()[1]
        self._add(self.lsock.fileno(), self._on_accept)
        self.csock = self._listen()
        self._add(self.csock.fileno(), self._on_control_accept)
        self._add(0, self._on_stdin)
        self.switch = socket.create_connection(("127.0.0.1", switch_port), timeout=10)
        self.switch.setblocking(False)
        self.switch_buf = b""
        self.api_n = 0
        self._add(self.switch.fileno(), self._on_switch)

    # -- plumbing --------------------------------------------------------------------------------

    @staticmethod
    def _listen() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(4096)
        s.setblocking(False)
        return s

    def _add(self, fd: int, handler, events: int = _IN) -> None:
        self.handlers[fd] = handler
        self.ep.register(fd, events)

    def _drop(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass

    def _mask(self) -> bytes:
        i = self.mask_pos
        if i >= len(self.masks):
            self.masks = os.urandom(4096)
            i = 0
        self.mask_pos = i + 4
        return self.masks[i:i + 4]

    def _app_frame(self, payload: bytes, opcode: int = 1) -> bytes:
        """A masked client frame (FIN + opcode)."""
        mask = self._mask()
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
        return head + mask + apply_mask(payload, mask)

    # -- the loop --------------------------------------------------------------------------------

    def serve(self) -> None:
        poll = self.ep.poll
        handlers = self.handlers
        while self.running:
            events = poll(0.5)
            self.wakeups += 1
            for fd, ev in events:
                h = handlers.get(fd)
                if h is None:
                    continue
                try:
                    h(ev)
                except Exception:  # noqa: BLE001 - logged; the handler's stream is closed below
                    self.errors += 1
                    log.exception("handler for fd %d failed", fd)
                    st = getattr(h, "__self__", None)
                    if isinstance(st, _StreamIO):
                        self._close_stream(st.st, "handler error")
            if self.pending_start is not None:
                self._check_start()
        self._shutdown()

    def _on_stdin(self, _ev) -> None:
        if not os.read(0, 4096):
            log.info("stdin closed: the orchestrator is gone")
            self.running = False

    # -- control ---------------------------------------------------------------------------------

    def _on_control_accept(self, _ev) -> None:
        try:
            sock, _ = self.csock.accept()
        except BlockingIOError:
            return
        sock.setblocking(True)
        sock.settimeout(10)
        buf = [b""]

        def on_control(_ev2, sock=sock, buf=buf):
            data = sock.recv(65536)
            if not data:
                self._drop(sock.fileno())
                sock.close()
                return
            buf[0] += data
            while b"\n" in buf[0]:
                line, _, buf[0] = buf[0].partition(b"\n")
                self._command(sock, json.loads(line))

        self._add(sock.fileno(), on_control)

    @staticmethod
    def _reply(sock, obj) -> None:
        sock.sendall((json.dumps(obj) + "\n").encode())

    def _command(self, sock, req: dict) -> None:
        cmd = req.pop("cmd")
        try:
            if cmd == "start":
                self._start(sock, **req)  # replies later
                return
            if cmd == "cpu":
                res = common.cpu_times()
                res.update(frames_in=self.frames_in, frames_out=0, streams_live=self.attached,
                           recvs=self.recvs, sends=self.sends, wakeups=self.wakeups)
            elif cmd == "python_work":
                res = python_work(**req)
            elif cmd == "stop_all":
                res = self._stop_all()
            elif cmd == "exit":
                res = {"ok": True}
                self.running = False
            else:
                res = {"error": f"unknown command {cmd!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
            log.exception("command %s failed", cmd)
            res = {"error": f"{type(exc).__name__}: {exc}"}
        self._reply(sock, res)

    def _start(self, sock, n: int, sink_url: str, rate: int = 8000, bidi: bool = False, prefix: str = "s",
               **_ignored) -> None:
        if bidi:
            raise ValueError("the I/O floor is one-way only")
        if rate not in (8000, 16000):
            raise ValueError(f"rate {rate}: 8000 or 16000")
        self.rate = rate
        t0 = time.monotonic()
        errors = []
        new = []
        for i in range(n):
            sid = f"{prefix}{i}"
            try:
                app, rest = common.ws_client_connect(f"{sink_url}/{sid}", subprotocol=None)
            except Exception as exc:  # noqa: BLE001 - counted
                errors.append(repr(exc))
                continue
            if rest:
                log.warning("%s: %d unexpected bytes after the app handshake", sid, len(rest))
            app.setblocking(False)
            sid_json = json.dumps(sid)
            fmt = ('{"sequenceNumber":%d,"streamId":' + sid_json + ',"event":"media","media":{"track":"inbound",'
                   '"timestamp":"%d","chunk":%d,"payload":"%s"},"extra_headers":"{}"}').encode()
            st = Stream(sid, app, fmt)
            self.streams[sid] = st
            self._add(st.app_fd, _StreamIO(self, st).on_app)
            new.append(st)
        rate_s = "8k" if rate == 8000 else "16k"
        lines = []
        for st in new:
            self.api_n += 1
            meta = json.dumps({"streamId": st.sid, "callUuid": "x"}, separators=(",", ":"))
            lines.append(f"{self.api_n} uuid_audio_fork {uuidlib.uuid4()} start ws://127.0.0.1:{self.port}"
                         f"/fork/{st.sid} mono {rate_s} audio_fork {meta}\n")
        self.switch.setblocking(True)
        try:
            self.switch.sendall("".join(lines).encode())
        finally:
            self.switch.setblocking(False)
        self.pending_start = (sock, self.ready + len(new), time.monotonic() + _START_WAIT_S, t0,
                              n - len(new), errors)

    def _check_start(self) -> None:
        sock, target, deadline, t0, failed, errors = self.pending_start
        now = time.monotonic()
        if self.ready < target and now < deadline:
            return
        self.pending_start = None
        short = max(0, target - self.ready)
        self._reply(sock, {"started": target - short, "failed": failed + short,
                           "errors": (errors + ([f"{short} forks did not attach"] if short else []))[:3],
                           "elapsed_s": now - t0})

    def _on_switch(self, _ev) -> None:
        data = self.switch.recv(65536)
        if not data:
            log.warning("switch connection closed")
            self._drop(self.switch.fileno())
            return
        self.switch_buf += data
        while b"\n" in self.switch_buf:
            line, _, self.switch_buf = self.switch_buf.partition(b"\n")
            if b"+OK" not in line:
                log.warning("uuid_audio_fork: %s", line.decode(errors="replace"))

    def _stop_all(self) -> dict:
        for st in list(self.streams.values()):
            self._close_stream(st, None)
        out = {"app_dropped": self.app_dropped, "protocol_errors": self.protocol_errors, "playout_dropped": 0,
               "events": {"handler_errors": self.errors} if self.errors else {}, "unstopped": 0}
        return out

    # -- module (fork) side ----------------------------------------------------------------------

    def _on_accept(self, _ev) -> None:
        for _ in range(256):  # bounded: the rest comes with the next wake-up
            try:
                sock, _ = self.lsock.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = sock.fileno()
            self.pending_forks[fd] = [sock, b""]
            self._add(fd, lambda ev, fd=fd: self._on_handshake(fd))

    def _on_handshake(self, fd: int) -> None:
        entry = self.pending_forks[fd]
        sock = entry[0]
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._reject(fd, None)
            return
        entry[1] += data
        head, sep, rest = entry[1].partition(b"\r\n\r\n")
        if not sep:
            if len(entry[1]) > _HANDSHAKE_CAP:
                self._reject(fd, b"431 Request Header Fields Too Large")
            return
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        headers = {}
        for h in lines[1:]:
            k, _, v = h.partition(b":")
            headers[k.strip().lower()] = v.strip()
        path = parts[1].decode(errors="replace") if len(parts) > 2 else ""
        sid = path.split("/fork/", 1)[1].split("?", 1)[0] if path.startswith("/fork/") else ""
        st = self.streams.get(sid)
        protos = [p.strip() for p in headers.get(b"sec-websocket-protocol", b"").split(b",")]
        key = headers.get(b"sec-websocket-key")
        if parts[0] != b"GET" or st is None or st.fork is not None or key is None \
                or common.SUBPROTOCOL.encode() not in protos or headers.get(b"upgrade", b"").lower() != b"websocket":
            self._reject(fd, b"403 Forbidden")
            return
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        del self.pending_forks[fd]
        self._drop(fd)
        sock.setblocking(True)
        sock.settimeout(5)
        try:
            sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: "
                         + common.SUBPROTOCOL.encode() + b"\r\n\r\n")
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        st.fork = sock
        st.fork_fd = fd
        io = _StreamIO(self, st)
        self._add(fd, io.on_fork_first)
        start = json.dumps({"sequenceNumber": 0, "event": "start", "start": {
            "callId": "x", "streamId": sid, "accountId": "MA_BENCH", "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": self.rate}}, "extra_headers": "{}"},
            separators=(",", ":")).encode()
        io.app_write(self._app_frame(start))
        self.attached += 1
        if rest:  # the first frame came with the upgrade
            self.ready += 1
            self.handlers[fd] = io.on_fork
            io.frames(rest)

    def _reject(self, fd: int, status: bytes | None) -> None:
        sock, _ = self.pending_forks.pop(fd, (None, None))
        self._drop(fd)
        if sock is None:
            return
        if status:
            try:
                sock.send(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            log.warning("fork connection refused: %s", status.decode())
        sock.close()

    def _close_stream(self, st: Stream, why: str | None) -> None:
        if not st.open:
            return
        st.open = False
        if why:
            log.warning("%s: closing: %s", st.sid, why)
        self.streams.pop(st.sid, None)
        if st.fork is not None:
            self.attached -= 1
            self._drop(st.fork_fd)
            try:
                st.fork.send(b"\x88\x02\x03\xe8")  # close 1000, server frame
            except OSError:
                pass
            st.fork.close()
        self._drop(st.app_fd)
        try:
            st.app.send(self._app_frame(b"\x03\xe8", 8))
        except OSError:
            pass
        st.app.close()

    def _shutdown(self) -> None:
        for st in list(self.streams.values()):
            self._close_stream(st, None)
        for fd in list(self.pending_forks):
            self._reject(fd, None)
        self.ep.close()


class _StreamIO:
    """The per-stream handlers (bound methods registered with epoll): the data path."""

    __slots__ = ("f", "st")

    def __init__(self, f: IoFloor, st: Stream):
        self.f = f
        self.st = st

    def on_fork_first(self, ev) -> None:
        """The fork's first bytes (its metadata frame): the load generator has counted it connected,
        so `start` may answer; then the plain data path takes over."""
        self.f.ready += 1
        self.f.handlers[self.st.fork_fd] = self.on_fork
        self.on_fork(ev)

    def on_fork(self, _ev) -> None:
        st = self.st
        try:
            data = st.fork.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self.f._close_stream(st, f"fork recv: {exc}")
            return
        self.f.recvs += 1
        if not data:
            self.f._close_stream(st, None)
            return
        self.frames(st.inbuf + data if st.inbuf else data)

    def frames(self, data: bytes) -> None:
        st = self.st
        f = self.f
        n = len(data)
        pos = 0
        out = []
        while n - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            ln = b1 & 0x7F
            if ln == 126:
                if n - pos < 8:
                    break
                ln = (data[pos + 2] << 8) | data[pos + 3]
                hl = 4
            elif ln == 127:
                if n - pos < 14:
                    break
                ln = int.from_bytes(data[pos + 2:pos + 10], "big")
                hl = 10
            else:
                hl = 2
            end = pos + hl + 4 + ln
            if end > n:
                break
            if not b1 & 0x80 or not b0 & 0x80:
                f.protocol_errors += 1
                f._close_stream(st, "unmasked or fragmented module frame")
                return
            op = b0 & 0x0F
            if op == 2:
                mask = data[pos + hl:pos + hl + 4]
                pcm = apply_mask(data[pos + hl + 4:end], mask)
                chunk = st.chunk + 1
                st.chunk = chunk
                seq = st.seq
                st.seq = seq + 1
                out.append(f._app_frame(st.fmt % (seq, st.start_ms + 20 * chunk, chunk,
                                                  b2a_base64(pcm, newline=False))))
            elif op == 8:
                f._close_stream(st, None)
                return
            elif op == 9:
                mask = data[pos + hl:pos + hl + 4]
                body = apply_mask(data[pos + hl + 4:end], mask)
                try:
                    st.fork.send(bytes((0x8A, len(body))) + body if len(body) < 126 else b"")
                except OSError:
                    pass
            # op 1: mod_audio_fork's metadata text frame; op 10: pong; both ignored
            pos = end
        if pos < n:
            st.inbuf = data[pos:]
            if len(st.inbuf) > _INBUF_CAP:
                f.protocol_errors += 1
                f._close_stream(st, "module frame too large")
                return
        else:
            st.inbuf = b""
        if out:
            f.frames_in += len(out)
            self.app_write(out[0] if len(out) == 1 else b"".join(out))

    def app_write(self, frame: bytes) -> None:
        st = self.st
        if st.out:
            if len(st.out) > _OUT_CAP:
                self.f.app_dropped += 1
            else:
                st.out += frame
            return
        try:
            k = st.app.send(frame)
        except BlockingIOError:
            k = 0
        except OSError as exc:
            self.f._close_stream(st, f"app send: {exc}")
            return
        self.f.sends += 1
        if k < len(frame):
            st.out = frame[k:]
            self.f.ep.modify(st.app_fd, _INOUT)

    def on_app(self, ev) -> None:
        st = self.st
        f = self.f
        if ev & select.EPOLLOUT and st.out:
            try:
                k = st.app.send(st.out)
            except BlockingIOError:
                k = 0
            except OSError as exc:
                f._close_stream(st, f"app send: {exc}")
                return
            f.sends += 1
            st.out = st.out[k:]
            if not st.out:
                f.ep.modify(st.app_fd, _IN)
        if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            try:
                data = st.app.recv(65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ECONNRESET:
                    log.warning("%s: app recv: %s", st.sid, exc)
                data = b""
            if not data:
                f._close_stream(st, None if st.fork is None else "app closed")
            # one-way: the app sends nothing but its closing handshake, which the close above ends


class _NullSock:
    """An app socket whose send takes everything at once (for `python_work`)."""

    def send(self, b) -> int:
        return len(b)

    def fileno(self) -> int:
        return -1


def python_work(frames: int = 20_000, frame_bytes: int = 320, repeats: int = 3) -> dict:
    """CPU seconds per frame of this relay's own per-frame Python (frame parse, unmask, base64, media
    text, app frame) on in-memory frames: the I/O floor minus its syscalls, wake-ups and kernel work.
    Median of `repeats` loops, `time.process_time()`."""
    import statistics

    class _F(IoFloor):
        def __init__(self):  # only what the data path touches
            self.frames_in = self.sends = self.app_dropped = self.protocol_errors = 0
            self.masks = b""
            self.mask_pos = 0

    fmt = ('{"sequenceNumber":%d,"streamId":"s17","event":"media","media":{"track":"inbound",'
           '"timestamp":"%d","chunk":%d,"payload":"%s"},"extra_headers":"{}"}').encode()
    io = _StreamIO(_F(), Stream("s17", _NullSock(), fmt))
    wire = [common.client_frame(common.OP_BINARY, os.urandom(frame_bytes)) for _ in range(16)]
    frames = max(1000, min(frames, 50_000))
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for i in range(frames):
            io.frames(wire[i & 15])
        times.append((time.process_time() - t0) / frames)
    return {"python_s": statistics.median(times)}


def main(switch_port: int) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s io_floor %(levelname)s %(message)s")
    f = IoFloor(switch_port)
    sys.stdout.write(json.dumps({"control": f.csock.getsockname()[1], "pid": os.getpid(), "port": f.port}) + "\n")
    sys.stdout.flush()
    try:
        f.serve()
    except KeyboardInterrupt:
        pass
    log.info("exit: frames_in %d, recvs %d, sends %d, wake-ups %d, errors %d", f.frames_in, f.recvs, f.sends,
             f.wakeups, f.errors)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.io_floor <switch-port>   (use python -m bench relay)")
    main(int(sys.argv[1]))
