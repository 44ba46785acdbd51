"""The Twilio Media Streams dialect, as a superset that SignalWire-style parsers also accept
(https://www.twilio.com/docs/voice/media-streams/websocket-messages): builds `connected`, `start`, `media`, `dtmf`,
`mark` (echo) and `stop`; parses `media`, `mark`, `clear` and SignalWire's `dtmf` from the app.

Counters owned here: `sequenceNumber` (string, from "1", +1 per message after `connected`),
`chunk` (string, per track, from "1"); `timestamp` is a string of ms since stream start on the
media clock (20 ms per frame). Every message after `connected` carries the top-level `streamSid`.
App audio (`media.payload`) is in the stream's codec (`encoding`/`sample_rate`).
"""
from __future__ import annotations

import json
from binascii import b2a_base64  # what base64.b64encode calls, without its Python frame

from ..errors import ProtocolError
from .base import (Checkpoint, ClearAudio, PlayAudio, SendDigits, DTMF_DIGITS, check_audio,
                   decode_payload, load_object)

_TRACKS = {"inbound": ["inbound"], "outbound": ["outbound"], "both": ["inbound", "outbound"]}
_ENCODINGS = {"l16": "audio/x-L16", "mulaw": "audio/x-mulaw"}
_COMPACT = (",", ":")


class TwilioDialect:
    name = "twilio"

    def __init__(self, stream_id: str, call_id: str, account_id: str = "", track: str = "inbound",
                 encoding: str = "mulaw", sample_rate: int = 8000,
                 custom_parameters: dict | None = None, version: str = "1.0.0"):
        if track not in _TRACKS:
            raise ValueError(f"bad track {track!r}")
        if encoding not in _ENCODINGS:
            raise ValueError(f"bad encoding {encoding!r}")
        if encoding == "mulaw" and sample_rate != 8000:
            raise ValueError("mulaw is 8000 Hz only")
        self.stream_id = stream_id
        self.call_id = call_id
        self.account_id = account_id
        self.track = track
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.custom_parameters = {str(k): str(v) for k, v in (custom_parameters or {}).items()}
        self.version = version
        self.sequence = 1
        self.chunks = {"inbound": 0, "outbound": 0}
        self._sid_json = json.dumps(stream_id)
        self._media_fmt = {t: ('{"event":"media","sequenceNumber":"%d","media":{"track":"' + t
                               + '","chunk":"%d","timestamp":"%d","payload":"%s"},"streamSid":'
                               + self._sid_json + "}") for t in ("inbound", "outbound")}

    def _next_seq(self) -> str:
        seq = self.sequence
        self.sequence += 1
        return str(seq)

    # -- to the app -------------------------------------------------------------------------------

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": self.version},
                          separators=_COMPACT)

    def opening(self) -> list[str]:
        """Messages sent when the stream starts (`connected` is sent earlier, on app connect)."""
        return [self.start()]

    def start(self) -> str:
        return json.dumps({
            "event": "start",
            "sequenceNumber": self._next_seq(),
            "start": {
                "streamSid": self.stream_id,
                "accountSid": self.account_id,
                "callSid": self.call_id,
                "tracks": list(_TRACKS[self.track]),
                "customParameters": dict(self.custom_parameters),
                "mediaFormat": {"encoding": _ENCODINGS[self.encoding], "sampleRate": self.sample_rate,
                                "channels": 1},
            },
            "streamSid": self.stream_id,
        }, separators=_COMPACT)

    def media(self, track: str, payload: bytes, media_ms: int) -> str:
        chunk = self.chunks[track] + 1
        self.chunks[track] = chunk
        seq = self.sequence
        self.sequence = seq + 1
        return self._media_fmt[track] % (seq, chunk, media_ms,
                                         b2a_base64(payload, newline=False).decode("ascii"))

    def played(self, name: str) -> str:
        return json.dumps({"event": "mark", "sequenceNumber": self._next_seq(), "streamSid": self.stream_id,
                           "mark": {"name": name}}, separators=_COMPACT)

    # Twilio returns pending marks on `clear` with the same echo as when played.
    mark_cleared = played

    def cleared(self) -> str | None:
        """Twilio has no clear acknowledgement."""
        return None

    def dtmf(self, digit: str, duration_ms: int | None = None) -> str:
        body = {"track": "inbound_track", "digit": digit}
        if duration_ms is not None:
            body["duration"] = int(duration_ms)
        return json.dumps({"event": "dtmf", "sequenceNumber": self._next_seq(), "streamSid": self.stream_id,
                           "dtmf": body}, separators=_COMPACT)

    def closing(self) -> str | None:
        return json.dumps({"event": "stop", "sequenceNumber": self._next_seq(),
                           "stop": {"accountSid": self.account_id, "callSid": self.call_id},
                           "streamSid": self.stream_id}, separators=_COMPACT)

    # -- from the app -----------------------------------------------------------------------------

    def parse(self, text):
        msg = load_object(text, "streamSid", self.stream_id)
        event = msg["event"]
        if event == "media":
            media = msg.get("media")
            if not isinstance(media, dict):
                raise ProtocolError("media without a 'media' object")
            audio = check_audio(decode_payload(media.get("payload")), self.encoding)
            return PlayAudio(audio, self.encoding, self.sample_rate)
        if event == "mark":
            mark = msg.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str) or not name:
                raise ProtocolError("mark without mark.name")
            return Checkpoint(name)
        if event == "clear":
            return ClearAudio()
        if event == "dtmf":
            dtmf = msg.get("dtmf")
            digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
            if not isinstance(digit, str) or not digit or any(d not in DTMF_DIGITS for d in digit):
                raise ProtocolError(f"dtmf with a bad digit {digit!r}")
            return SendDigits(digit)
        raise ProtocolError(f"unknown event {event!r}")
