"""Test helpers for the switch_sim tests: read the FreeSWITCH captures into byte-exact blocks, a raw
ESL client (byte-exact frames over TCP), an outbound-socket controller server that runs a script per
connection, header-name normalisation for comparing simulator events with captured ones, and audio
analysis (share of the energy at one frequency)."""
from __future__ import annotations

import json
import time
import re
import socket
from pathlib import Path

import numpy as np
from gevent.event import Event
from gevent.queue import Empty, Queue
from gevent.server import StreamServer

CAPTURES = Path(__file__).parent / 'fixtures' / 'fs-captures'
_BLOCK = re.compile(r'^==== \[t=([\d.]+)\] (\S+)(.*?)====\n(.*?)==== end ====\n', re.S | re.M)


def load_blocks(name):
    """[(direction, bytes)] of a capture file (.txt or .jsonl), byte exact."""
    path = CAPTURES / name
    if path.suffix == '.jsonl':
        out = []
        for line in path.read_text(encoding='utf-8').splitlines():
            rec = json.loads(line)
            out.append((rec['dir'], rec['data'].encode('latin-1')))
        return out
    out = []
    for m in _BLOCK.finditer(path.read_text(encoding='utf-8')):
        _t, direction, rest, body = m.groups()
        if 'NO trailing LF' in rest:
            body = body[:-1]
        out.append((direction, body.encode('utf-8')))
    return out


def split_frame(data: bytes):
    """(outer headers list, body bytes) of one FS->client frame."""
    head, _, rest = data.partition(b'\n\n')
    headers = [tuple(line.split(': ', 1)) for line in head.decode('utf-8').split('\n') if ': ' in line]
    return headers, rest


def event_headers(body: bytes):
    """[(name, raw value)] of a text/event-plain payload (values still URL-encoded)."""
    head = body.split(b'\n\n', 1)[0].decode('utf-8')
    return [tuple(line.split(': ', 1)) for line in head.split('\n') if ': ' in line]


def captured_events(name):
    """[(Event-Name, headers)] of every text/event-plain frame sent by FS in a capture."""
    out = []
    for direction, data in load_blocks(name):
        if not direction.startswith('FS->'):
            continue
        outer, body = split_frame(data)
        if dict(outer).get('Content-Type') == 'text/event-plain':
            hs = event_headers(body)
            out.append((dict(hs).get('Event-Name'), hs))
    return out


# Fields FreeSWITCH omits when empty (switch_caller_profile_event_set_data) or adds only for some
# media types: differences here come from the call scenario, not from the serializer.
OPTIONAL = re.compile(r'^(Caller|Channel)-(Caller-ID-Name|Orig-Caller-ID-Name|Orig-Caller-ID-Number|'
                      r'Callee-ID-Name|Callee-ID-Number)$|^Playback-File-Type$|^Application-Data$|^variable_')


def shape(headers):
    """The header-name sequence without per-scenario optional fields and variables."""
    return tuple(k for k, _ in headers if not OPTIONAL.match(k))


class RawESL:
    """A byte-exact ESL peer over a socket: frames as (outer headers dict, body bytes, raw bytes)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b''
        self.backlog = []      # event frames skipped by command(), oldest first

    @classmethod
    def connect(cls, address, timeout=5):
        return cls(socket.create_connection(address[:2], timeout=timeout))

    def send(self, text: str):
        self.sock.sendall(text.encode('utf-8'))

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError('closed')
        self.buf += data

    def frame(self, timeout=5):
        self.sock.settimeout(timeout)
        while b'\n\n' not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b'\n\n')
        headers = dict(tuple(line.split(': ', 1)) for line in head.decode().split('\n') if ': ' in line)
        n = int(headers.get('Content-Length', 0))
        while len(rest) < n:
            self._fill()
            head, _, rest = self.buf.partition(b'\n\n')
        body = rest[:n]
        raw = head + b'\n\n' + body
        self.buf = rest[n:]
        return headers, body, raw

    def command(self, text, timeout=5):
        """Send a command, return the first reply frame that is not an event."""
        self.send(text if text.endswith('\n\n') else text + '\n\n')
        while True:
            headers, body, raw = self.frame(timeout)
            if headers.get('Content-Type') not in ('text/event-plain', 'text/event-json'):
                return headers, body, raw
            self.backlog.append((headers, body, raw))

    def next_frame(self, timeout=5):
        """The next frame, skipped events (backlog) first."""
        if self.backlog:
            return self.backlog.pop(0)
        return self.frame(timeout)

    def closed(self, timeout=5) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


class Controller:
    """Listens like callfork's outbound server; runs `script(esl, record)` for each connection."""

    def __init__(self, script):
        self.script = script
        self.results = Queue()
        self.server = StreamServer(('127.0.0.1', 0), self._handle)
        self.server.start()
        self.address = self.server.address[:2]

    def _handle(self, sock, addr):
        esl = RawESL(sock)
        record = {'frames': [], 'error': None}
        try:
            self.script(esl, record)
        except Exception as exc:  # reported to the test through the queue
            record['error'] = repr(exc)
        finally:
            self.results.put(record)
            sock.close()

    def result(self, timeout=15):
        try:
            return self.results.get(timeout=timeout)
        except Empty:
            raise AssertionError('the controller did not finish within %ss' % timeout)

    def stop(self):
        self.server.stop(timeout=1)


def read_until(esl, record, predicate, timeout=10):
    """Read frames into record['frames'] until predicate(headers, body) is true; return that frame."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError('timed out waiting for a frame')
        headers, body, raw = esl.frame(timeout=remaining)
        record['frames'].append((headers, body, raw))
        if predicate(headers, body):
            return headers, body


def event_of(body: bytes) -> dict:
    from switch_sim.urlenc import url_decode
    return {k: url_decode(v) for k, v in reversed(event_headers(body))}


def tone_share(samples: np.ndarray, rate: int, freq: float, width: float = 40.0) -> float:
    """Share of the signal energy within +-width Hz of freq."""
    x = samples.astype(np.float64)
    if not len(x) or not np.any(x):
        return 0.0
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
    band = (freqs > freq - width) & (freqs < freq + width)
    return float(spec[band].sum() / spec.sum())


def write_tone_wav(path, freq, seconds, rate=8000, channels=1, amplitude=0.4):
    import soundfile
    t = np.arange(int(rate * seconds)) / rate
    sig = amplitude * np.sin(2 * np.pi * freq * t)
    data = np.stack([sig] * channels, axis=1) if channels > 1 else sig
    soundfile.write(str(path), data, rate, subtype='PCM_16')
    return str(path)


def wait_for(predicate, timeout=5.0, step=0.01):
    """Poll a condition (no fixed sleeps): True once predicate() holds, else AssertionError."""
    ev = Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        ev.wait(step)
    raise AssertionError('condition not met within %ss' % timeout)
