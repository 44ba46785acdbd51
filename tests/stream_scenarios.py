"""Shared machinery of the live-streaming scenarios (tests/test_scenario_stream_*.py and
tests/test_scenario_swml_*.py); holds no tests.

`Calls` serves one answer document per called number on a `harness.Stack`'s app, so many calls run
at once on one stack; `webhooks(uuid)` gives every status callback the app received for one call
(form posts by CallUUID, SWML JSON by params.call_id). Signals are generated here (noise, tones),
and `locate()` finds where a received stretch of audio sits in what the caller spoke, so inbound
payloads can be compared byte for byte. `tone_power()` measures a frequency in a window of audio
(what the caller heard, a recording channel).
"""
from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import soundfile

from http_receiver import Reply
import waiting

RATE = 8000


# -- documents and webhooks ----------------------------------------------------------------------

class Calls:
    """Answer documents chosen by the called number (the `To` of the answer request)."""

    def __init__(self, stack):
        self.stack = stack
        self.docs: dict = {}
        stack.app.document("/answer", self._answer)

    def add(self, to: str, body, content_type: str = "application/xml") -> None:
        self.docs[to] = (body, content_type)

    def _answer(self, req):
        form = req.form if req.method == "POST" else req.args
        if not form and req.body.startswith(b"{"):
            form = json.loads(req.body)
        body, ctype = self.docs.get(form.get("To"), ("<Response/>", "application/xml"))
        if callable(body):
            body = body(req)
        return Reply(200, body.encode() if isinstance(body, str) else body, ctype)

    def url(self, path: str) -> str:
        return self.stack.app.url(path)

    def serve_wav(self, path: str, samples: np.ndarray, rate: int = RATE) -> str:
        buf = io.BytesIO()
        soundfile.write(buf, samples, rate, subtype="PCM_16", format="WAV")
        return self.stack.app.document(path, buf.getvalue(), "audio/wav")

    def webhooks(self, uuid: str, event: str | None = None) -> list:
        """Status callbacks for call `uuid`: form dicts (Vobiz) or parsed JSON (SWML), in order."""
        out = []
        for req in list(self.stack.app.requests):
            if req.path == "/answer":
                continue
            body = _body(req)
            if body is None:
                continue
            call_uuid = body.get("CallUUID") or (body.get("params") or {}).get("call_id")
            if call_uuid != uuid:
                continue
            name = body.get("Event") or (body.get("params") or {}).get("state")
            if event is None or name == event:
                out.append(body)
        return out

    def wait_webhook(self, uuid: str, event: str, timeout: float = 10.0, count: int = 1) -> list:
        ok = self.stack.app.wait_for(lambda: len(self.webhooks(uuid, event)) >= count, timeout)
        if not ok:
            seen = [b.get("Event") or b.get("params", {}).get("state") for b in self.webhooks(uuid)]
            raise AssertionError(f"no {count}x {event} for {uuid} within {timeout}s; seen {seen}")
        return self.webhooks(uuid, event)

    def paths(self) -> list:
        return [r.path for r in list(self.stack.app.requests)]


def _body(req):
    if req.headers.get("content-type", "").startswith("application/json"):
        try:
            return json.loads(req.body)
        except ValueError:
            return None
    return req.form if req.method == "POST" else req.args


# -- signals -----------------------------------------------------------------------------------

def noise(seconds: float, seed: int = 1, level: float = 3000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(int(seconds * RATE)) * level, -32768, 32767).astype(np.int16)


def tone(freq: float, seconds: float, rate: int = RATE, level: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def tones(freqs, seconds: float, rate: int = RATE, level: float = 6000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    sig = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    return (level * sig).astype(np.int16)


def write_wav(path, samples: np.ndarray, rate: int = RATE):
    soundfile.write(str(path), samples, rate, subtype="PCM_16")
    return str(path)


def locate(received: np.ndarray, source: np.ndarray, step: int = 160) -> int:
    """The offset (a multiple of `step`) at which `received` starts inside `source`; -1 if none."""
    head = received[:step]
    for off in range(0, len(source) - step + 1, step):
        if np.array_equal(source[off:off + step], head):
            return off
    return -1


def assert_exact(received: np.ndarray, source: np.ndarray, step: int = 160, what: str = "audio") -> int:
    """`received` is `source` from some frame on, sample for sample (leading silence skipped, and
    the silence after the source ended allowed). Returns how many samples matched."""
    nz = np.flatnonzero(received)
    assert len(nz), f"{what}: only silence received"
    start = (nz[0] // step) * step
    got = received[start:]
    off = locate(got, source, step)
    assert off >= 0, f"{what}: the first received frame is not a frame of the source"
    n = min(len(got), len(source) - off)
    assert n >= 10 * step, f"{what}: only {n} samples overlap"
    assert np.array_equal(got[:n], source[off:off + n]), f"{what}: differs from the source"
    assert not np.any(got[n:]), f"{what}: audio after the source ended"
    return n


def tone_power(samples: np.ndarray, freq: float, rate: int = RATE) -> float:
    """Share of the signal's energy within ±25 Hz of `freq` (0..1)."""
    x = samples.astype(np.float64)
    if len(x) < 16 or not np.any(x):
        return 0.0
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    total = spec.sum()
    return float(spec[(f > freq - 25) & (f < freq + 25)].sum() / total) if total else 0.0


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def windows_with(samples: np.ndarray, freq: float, win: float = 0.1, share: float = 0.5,
                 min_rms: float = 300.0, rate: int = RATE) -> int:
    """How many `win`-second windows of `samples` are mostly `freq` (loud enough)."""
    n = int(win * rate)
    count = 0
    for i in range(0, len(samples) - n + 1, n):
        w = samples[i:i + n]
        if rms(w) >= min_rms and tone_power(w, freq, rate) >= share:
            count += 1
    return count


# -- what a WebSocket app received ------------------------------------------------------------------

def messages(conn) -> list:
    return [json.loads(m) for m in conn.texts()]


def media(msgs, track: str | None = None) -> list:
    return [m for m in msgs if m.get("event") == "media" and (track is None or m["media"]["track"] == track)]


def payload_bytes(msgs) -> bytes:
    return b"".join(base64.b64decode(m["media"]["payload"]) for m in msgs)


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2")


def b64(data) -> str:
    if isinstance(data, np.ndarray):
        data = data.astype("<i2").tobytes()
    return base64.b64encode(data).decode()


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    return waiting.wait_until(predicate, timeout, what)


def fork_module(stack):
    """The simulator's mod_audio_fork (its live media bugs are `.sessions`)."""
    return stack.sim.apis["uuid_audio_fork"].__self__


def bugs_of(stack, uuid: str) -> list:
    return sorted(name for (u, name) in fork_module(stack).sessions if u == uuid)
