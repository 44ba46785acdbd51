"""The floor: the CPU cost of the work no relay can avoid for the same frames, measured in the same
run, in the relay's own process (after its streams have stopped), with `time.process_time()`.

- upstream, per 20 ms frame: `base64.b64encode` of the frame's PCM + `json.dumps` of the same Vobiz
  `media` message callfork sends (same keys, same compact separators). This is the benchmark's
  "unavoidable base64+JSON work".
- upstream, stricter variant (`template`): the same text built by %-formatting a pre-escaped
  template around the base64, which is what `audio_fork.dialects.vobiz` does. Reported for
  reference; the ratios use the json.dumps floor.
- downstream (bidirectional), per playAudio message the app sends: `json.loads` of the message +
  `base64.b64decode` of its payload.
Each figure is the median of `repeats` timed loops of `frames` iterations.
The other baseline, the I/O floor (what the same frames cost a minimal relay that also does the
recv/send/wake-up work), is bench/io_floor.py, run as its own process by bench/relay.py.
"""
from __future__ import annotations

import base64
import json
import os
import statistics
import time

_SEP = (",", ":")


def _payloads(frame_bytes: int, k: int = 64) -> list:
    return [os.urandom(frame_bytes) for _ in range(k)]


def media_json_floor(frames: int, frame_bytes: int = 320, stream_id: str = "s17") -> float:
    """Seconds of CPU per frame to build the media JSON with base64 + json.dumps."""
    payloads = _payloads(frame_bytes)
    b64 = base64.b64encode
    dumps = json.dumps
    start_ms = int(time.time() * 1000)
    t0 = time.process_time()
    for i in range(frames):
        dumps({"sequenceNumber": i + 1, "streamId": stream_id, "event": "media",
               "media": {"track": "inbound", "timestamp": str(start_ms + 20 * i), "chunk": i + 1,
                         "payload": b64(payloads[i & 63]).decode("ascii")},
               "extra_headers": "{}"}, separators=_SEP)
    return (time.process_time() - t0) / frames


def media_template_floor(frames: int, frame_bytes: int = 320, stream_id: str = "s17") -> float:
    """Seconds of CPU per frame for the same text from a pre-escaped template (the stricter floor)."""
    payloads = _payloads(frame_bytes)
    b64 = base64.b64encode
    fmt = ('{"sequenceNumber":%d,"streamId":' + json.dumps(stream_id)
           + ',"event":"media","media":{"track":"inbound","timestamp":"%d","chunk":%d,"payload":"%s"}'
           + ',"extra_headers":"{}"}')
    start_ms = int(time.time() * 1000)
    t0 = time.process_time()
    for i in range(frames):
        fmt % (i + 1, start_ms + 20 * i, i + 1, b64(payloads[i & 63]).decode("ascii"))
    return (time.process_time() - t0) / frames


def play_audio_floor(messages: int, audio_bytes: int = 640, rate: int = 8000) -> float:
    """Seconds of CPU per playAudio message: json.loads + base64 decode of its payload."""
    texts = [json.dumps({"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": rate,
                                                         "payload": base64.b64encode(p).decode()}},
                        separators=_SEP) for p in _payloads(audio_bytes, 16)]
    loads = json.loads
    dec = base64.b64decode
    t0 = time.process_time()
    for i in range(messages):
        dec(loads(texts[i & 15])["media"]["payload"])
    return (time.process_time() - t0) / messages


def measure(frames: int = 100_000, frame_bytes: int = 320, play_messages: int = 0, play_bytes: int = 640,
            play_rate: int = 8000, repeats: int = 3) -> dict:
    frames = max(1000, min(frames, 50_000))
    out = {
        "up_json_s": statistics.median(media_json_floor(frames, frame_bytes) for _ in range(repeats)),
        "up_template_s": statistics.median(media_template_floor(frames, frame_bytes) for _ in range(repeats)),
        "down_s": 0.0,
    }
    if play_messages:
        n = max(1000, min(play_messages, 30_000))
        out["down_s"] = statistics.median(play_audio_floor(n, play_bytes, play_rate) for _ in range(repeats))
    return out


if __name__ == "__main__":
    r = measure(50_000)
    print({k: f"{v * 1e6:.2f} us" for k, v in r.items()})
