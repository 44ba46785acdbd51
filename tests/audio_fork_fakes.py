"""Test stand-ins for FreeSWITCH in the audio_fork tests (not mocks of callfork code):
FreeSWITCH's API-argument tokenizer (switch_separate_string), mod_audio_fork's view of a
`start` command, G.711 reference codecs, a fake mod_audio_fork WebSocket client (websockets'
ClientProtocol, through tests/ws_endpoint.py) and a fake `api` callable that runs it."""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import gevent
from gevent.event import Event
from websockets.frames import CloseCode, Opcode

from ws_endpoint import connect

# --- FreeSWITCH argument splitting (switch_utils.c) ----------------------------------------------


def _unescape(c):
    return {"n": "\n", "r": "\r", "t": "\t", "s": " "}.get(c, c)


def fs_cleanup(tok: str) -> str:
    out, end, inside, i = [], 0, False, 0
    while i < len(tok):
        ch = tok[i]
        if ch == "\\" and i + 1 < len(tok):
            e = tok[i + 1]
            if e in "'\"\\" or _unescape(e) != e:
                out.append(_unescape(e))
                end = len(out)
                i += 2
                continue
        if ch == "'" and (inside or "'" in tok[i + 1:]):
            inside = not inside
            if inside:
                end = len(out)
        else:
            out.append(ch)
            if ch != " " or inside:
                end = len(out)
        i += 1
    return "".join(out[:end])


def fs_split(line: str, slots: int) -> list:
    """switch_separate_string(buf, ' ', argv, slots): the last slot keeps the rest of the line."""
    i, n, inside = 0, len(line), False
    toks = []
    while i < n and len(toks) < slots:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        start = i
        if len(toks) == slots - 1:
            toks.append(line[start:])
            break
        while i < n:
            ch = line[i]
            if ch == "\\":
                i += 2
                continue
            if ch == "'":
                inside = not inside
            elif ch == " " and not inside:
                break
            i += 1
        toks.append(line[start:i])
    return [fs_cleanup(t) for t in toks]


def module_start_args(api_line: str, flavor: str) -> dict:
    """What mod_audio_fork makes of `uuid_audio_fork <args>` (freeswitch.md §4.2)."""
    args = api_line.split(" ", 1)[1]
    argv = fs_split(args, 7 if flavor == "drachtio" else 10)
    out = {"uuid": argv[0], "url": argv[2], "mix": argv[3], "rate": argv[4], "bug": "audio_fork",
           "metadata": None, "bidi": None}
    if len(argv) == 6:
        if argv[5][:1] in "{[":
            out["metadata"] = argv[5]
        else:
            out["bug"] = argv[5]
    elif len(argv) >= 7:
        if argv[5]:
            out["bug"] = argv[5]
        if argv[6]:
            out["metadata"] = argv[6]
    if len(argv) > 9:
        out["bidi"] = (argv[7] == "true", argv[8] == "true", argv[9])
    return out

# --- G.711 reference (Sun g711.c) ------------------------------------------------------------------


def g711_ulaw_decode(u: int) -> int:
    u = ~u & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


SEG_END = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF]


def g711_ulaw_encode(pcm: int) -> int:
    if pcm < 0:
        # ITU-T G.191 (and FreeSWITCH's g711.h, spandsp): the magnitude of a negative value is -x - 1
        pcm, mask = -pcm - 1, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 32635) + 0x84
    seg = next((i for i, end in enumerate(SEG_END) if pcm <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return (((seg << 4) | ((pcm >> (seg + 3)) & 0x0F)) ^ mask) & 0xFF

# --- fake mod_audio_fork ---------------------------------------------------------------------------


class FakeModule:
    """Connects like mod_audio_fork (subprotocol audio.drachtio.org), sends the metadata text frame
    and the given binary messages paced every `interval` s, and records what the relay sends back."""

    def __init__(self, url, metadata, messages, interval=0.0):
        self.url = url
        self.metadata = metadata
        self.messages = messages
        self.interval = interval
        self.binary: list = []       # (time.monotonic(), bytes)
        self.texts: list = []
        self.subprotocol = None
        self.error = None
        self.close_code = None
        self.connected = Event()
        self.closed = Event()
        self.sent_all = Event()
        self.ws = None
        self._changed = Event()

    def run(self):
        try:
            # an Origin as websocket-client sent it (host:port); ClientProtocol sends none by itself
            self.ws = connect(self.url, subprotocols=["audio.drachtio.org"],
                              headers=[("Origin", "http://%s" % urlsplit(self.url).netloc)], timeout=5)
        except Exception as exc:  # noqa: BLE001 - recorded for the test to assert on
            self.error = exc
            self.closed.set()
            return
        self.subprotocol = self.ws.subprotocol
        self.connected.set()
        reader = gevent.spawn(self._read)
        try:
            if self.metadata is not None:
                self.ws.send_text(self.metadata)
            for msg in self.messages:
                self.ws.send_binary(msg)
                if self.interval:
                    gevent.sleep(self.interval)   # pacing: the frames go `interval` apart, as a live fork sends them
                else:
                    gevent.sleep(0)
        except Exception as exc:  # noqa: BLE001
            self.error = self.error or exc
        self.sent_all.set()
        reader.join()

    def _read(self):
        try:
            while True:
                events = self.ws.read()
                if events is None:
                    break
                now = time.monotonic()
                for kind, data in events:
                    if kind is Opcode.BINARY:
                        self.binary.append((now, data))
                    elif kind is Opcode.TEXT:
                        self.texts.append(data)
                    elif kind is Opcode.CLOSE:
                        self.close_code = None if data.code == CloseCode.NO_STATUS_RCVD else data.code
                self._changed.set()
                if any(kind is Opcode.CLOSE for kind, _ in events):
                    break
        finally:
            self.closed.set()
            self._changed.set()
            self.ws.abort()

    def wait_for(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"fake module: condition not met within {timeout}s "
                                     f"({len(self.binary)} binary, texts={self.texts})")
            self._changed.clear()
            if not predicate(self):
                self._changed.wait(min(left, 0.5))
        return True

    def close(self, code=1000, timeout=1.0):
        """What mod_audio_fork does on `stop`: Close 1000; waits up to `timeout` s for the relay's
        answer (read by the reader), then drops the connection."""
        if self.ws is None:
            return
        try:
            self.ws.send_close(code)
        except Exception:  # noqa: BLE001 - closed already
            pass
        if not self.closed.wait(timeout):
            self.ws.abort()


class FakeSwitch:
    """The `api` callable: understands `uuid_audio_fork ... start|stop` and `uuid_send_dtmf` the
    way FreeSWITCH + mod_audio_fork would, starting a FakeModule on `start`."""

    def __init__(self, messages=(), interval=0.0, flavor="jambonz", connect=True, start_reply="+OK Success\n"):
        self.messages = list(messages)
        self.interval = interval
        self.flavor = flavor
        self.connect = connect
        self.start_reply = start_reply
        self.commands: list = []
        self.modules: list = []
        self.started = Event()

    def api(self, cmd: str) -> str:
        self.commands.append(cmd)
        if cmd.startswith("uuid_audio_fork "):
            argv = fs_split(cmd.split(" ", 1)[1], 7 if self.flavor == "drachtio" else 10)
            if argv[1] == "start":
                if not self.start_reply.startswith("+OK"):
                    return self.start_reply
                args = module_start_args(cmd, self.flavor)
                if self.connect:
                    module = FakeModule(args["url"], args["metadata"], self.messages, self.interval)
                    module.args = args
                    self.modules.append(module)
                    gevent.spawn(module.run)
                self.started.set()
                return "+OK Success\n"
            if argv[1] == "stop":
                for m in self.modules:
                    m.close(1000)
                return "+OK Success\n"
            return "-ERR Operation Failed\n"
        if cmd.startswith("uuid_send_dtmf "):
            return "+OK Success\n"
        if cmd.startswith(("uuid_broadcast ", "uuid_break ")):   # the drachtio playAudio fallback
            return "+OK Message sent\n"
        return "-ERR Command not found\n"

    @property
    def module(self) -> FakeModule:
        assert self.modules, "no module was started"
        return self.modules[0]
