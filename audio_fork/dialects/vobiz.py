"""The Vobiz (Plivo-style) stream protocol (https://docs.vobiz.ai/xml/stream/stream-events): builds `start`, `media`,
`playedStream`, `clearedAudio` and `dtmf` text frames and parses `playAudio`, `checkpoint`,
`clearAudio` and `stop` from the app.

Counters owned here: `sequenceNumber` (0 on `start`, +1 per message sent) and `chunk` (per-stream,
+1 per media message, from 1). `media.timestamp` is a string of epoch milliseconds: the stream's
start time plus the media clock (20 ms per frame), so it never runs backwards.
Decisions (docs/decisions.md): `extra_headers` is the literal "{}" unless `extra_headers_mode="plivo"`
(then `k=v;k2=v2`); `playedStream` carries `sequenceNumber` and `streamId` besides the documented
minimum `event`+`name` (Plivo's shape; harmless extras that let an app with several streams route
the ack); no in-band `stop` is ever sent (the socket closes with 1000).
"""
from __future__ import annotations

import json
import time
from binascii import b2a_base64  # what base64.b64encode calls, without its Python frame

from ..errors import ProtocolError
from .base import (Checkpoint, ClearAudio, PlayAudio, StopStream, check_audio, decode_payload,
                   load_object)

_TRACKS = {"inbound": ["inbound"], "outbound": ["outbound"], "both": ["inbound", "outbound"]}
_ENCODINGS = {"l16": "audio/x-l16", "mulaw": "audio/x-mulaw"}
_PLAY_RATES = {"l16": (8000, 16000, 24000), "mulaw": (8000,)}


def plivo_extra_headers(headers: dict) -> str:
    return ";".join(f"{k}={v}" for k, v in headers.items())


class VobizDialect:
    name = "vobiz"

    def __init__(self, stream_id: str, call_id: str, account_id: str = "", track: str = "inbound",
                 encoding: str = "l16", sample_rate: int = 8000, extra_headers: dict | None = None,
                 extra_headers_mode: str = "vobiz", clock=time.time):
        if track not in _TRACKS:
            raise ValueError(f"bad track {track!r}")
        if encoding not in _ENCODINGS:
            raise ValueError(f"bad encoding {encoding!r}")
        self.stream_id = stream_id
        self.call_id = call_id
        self.account_id = account_id
        self.track = track
        self.encoding = encoding
        self.sample_rate = sample_rate
        if extra_headers_mode == "plivo":
            self.extra_headers = plivo_extra_headers(extra_headers or {})
        elif extra_headers_mode == "vobiz":
            self.extra_headers = "{}"
        else:
            raise ValueError(f"bad extra_headers_mode {extra_headers_mode!r}")
        self._clock = clock
        self.sequence = 0
        self.chunk = 0
        self.start_ms = int(clock() * 1000)
        # pre-escaped pieces of the hot-path media message
        self._sid_json = json.dumps(stream_id)
        self._media_tail = ',"extra_headers":' + json.dumps(self.extra_headers) + "}"
        self._media_fmt = {t: ('{"sequenceNumber":%d,"streamId":' + self._sid_json
                               + ',"event":"media","media":{"track":"' + t
                               + '","timestamp":"%d","chunk":%d,"payload":"%s"}' + self._media_tail)
                           for t in ("inbound", "outbound")}

    # -- to the app -------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self.sequence
        self.sequence += 1
        return seq

    def opening(self) -> list[str]:
        """Messages sent when the stream starts (Vobiz: only `start`)."""
        return [self.start()]

    def start(self) -> str:
        self.start_ms = int(self._clock() * 1000)
        msg = {
            "sequenceNumber": self._next_seq(),
            "event": "start",
            "start": {
                "callId": self.call_id,
                "streamId": self.stream_id,
                "accountId": self.account_id,
                "tracks": list(_TRACKS[self.track]),
                "mediaFormat": {"encoding": _ENCODINGS[self.encoding], "sampleRate": self.sample_rate},
            },
            "extra_headers": self.extra_headers,
        }
        return json.dumps(msg, separators=(",", ":"))

    def media(self, track: str, payload: bytes, media_ms: int) -> str:
        """One media message; `media_ms` = position of this frame on the media clock."""
        self.chunk = chunk = self.chunk + 1
        seq = self.sequence
        self.sequence = seq + 1
        return self._media_fmt[track] % (seq, self.start_ms + media_ms, chunk,
                                         b2a_base64(payload, newline=False).decode("ascii"))

    def played(self, name: str) -> str:
        return json.dumps({"sequenceNumber": self._next_seq(), "event": "playedStream",
                           "streamId": self.stream_id, "name": name}, separators=(",", ":"))

    def mark_cleared(self, name: str) -> str | None:
        """Vobiz voids pending checkpoints on clearAudio: nothing is sent."""
        return None

    def cleared(self) -> str | None:
        return json.dumps({"sequenceNumber": self._next_seq(), "event": "clearedAudio",
                           "streamId": self.stream_id}, separators=(",", ":"))

    def dtmf(self, digit: str, duration_ms: int | None = None) -> str:
        return json.dumps({"event": "dtmf", "sequenceNumber": self._next_seq(), "streamId": self.stream_id,
                           "dtmf": {"track": "inbound", "digit": digit,
                                    "timestamp": str(int(self._clock() * 1000))},
                           "extra_headers": self.extra_headers}, separators=(",", ":"))

    def closing(self) -> str | None:
        """Vobiz sends no in-band stop: the socket just closes (docs/decisions.md)."""
        return None

    # -- from the app -----------------------------------------------------------------------------

    def parse(self, text):
        msg = load_object(text, "streamId", self.stream_id)
        event = msg["event"]
        if event == "playAudio":
            return self._parse_play(msg)
        if event == "checkpoint":
            name = msg.get("name")
            if not isinstance(name, str) or not name:
                raise ProtocolError("checkpoint without a 'name' string")
            return Checkpoint(name)
        if event == "clearAudio":
            return ClearAudio()
        if event == "stop":
            return StopStream()
        raise ProtocolError(f"unknown event {event!r}")

    @staticmethod
    def _parse_play(msg: dict) -> PlayAudio:
        media = msg.get("media")
        if not isinstance(media, dict):
            raise ProtocolError("playAudio without a 'media' object")
        ctype = media.get("contentType")
        if not isinstance(ctype, str):
            raise ProtocolError("playAudio: media.contentType missing")
        parts = [p.strip() for p in ctype.split(";")]
        base = parts[0].lower()
        if base == "audio/x-l16":
            encoding = "l16"
        elif base == "audio/x-mulaw":
            encoding = "mulaw"
        else:
            raise ProtocolError(f"playAudio: unsupported contentType {ctype!r}")
        rate_param = None
        for p in parts[1:]:
            key, _, value = p.partition("=")
            if key.strip().lower() == "rate":
                rate_param = _rate(value, "contentType rate")
        rate = media.get("sampleRate")
        rate = _rate(rate, "sampleRate") if rate is not None else None
        if rate is None:
            rate = rate_param if rate_param is not None else 8000
        elif rate_param is not None and rate_param != rate:
            raise ProtocolError(f"playAudio: sampleRate {rate} contradicts contentType {ctype!r}")
        if rate not in _PLAY_RATES[encoding]:
            raise ProtocolError(f"playAudio: {base} at {rate} Hz is not supported")
        audio = check_audio(decode_payload(media.get("payload")), encoding)
        return PlayAudio(audio, encoding, rate)


def _rate(value, what: str) -> int:
    if isinstance(value, bool):
        raise ProtocolError(f"playAudio: {what} must be a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ProtocolError(f"playAudio: bad {what} {value!r}")
