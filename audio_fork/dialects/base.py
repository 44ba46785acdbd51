"""What an app can ask for, independent of the dialect it spoke, plus the shared parsing helpers."""
from __future__ import annotations

import binascii
import json
from dataclasses import dataclass

from ..errors import ProtocolError


@dataclass(frozen=True)
class AppMessage:
    """Base of the parsed app messages."""


@dataclass(frozen=True)
class PlayAudio(AppMessage):
    """Audio to queue for the caller. `audio` is the raw payload as sent (`encoding` 'l16' in the
    stream's configured byte order, or 'mulaw'), at `sample_rate`."""
    audio: bytes
    encoding: str
    sample_rate: int


@dataclass(frozen=True)
class Checkpoint(AppMessage):
    """Vobiz `checkpoint` / Twilio `mark`: tell me when the audio queued before this has played."""
    name: str


@dataclass(frozen=True)
class ClearAudio(AppMessage):
    """Vobiz `clearAudio` / Twilio `clear`: drop everything queued and not yet played."""


@dataclass(frozen=True)
class StopStream(AppMessage):
    """Vobiz `stop`: end the stream."""


@dataclass(frozen=True)
class SendDigits(AppMessage):
    """SignalWire `dtmf` from the app: inject DTMF into the call."""
    digits: str


DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")


def load_object(text, id_key: str | None = None, stream_id: str | None = None) -> dict:
    """Parse an app text frame into a JSON object with a string `event`, or raise ProtocolError;
    with `id_key`, a message naming another stream in it is refused too."""
    if isinstance(text, (bytes, bytearray)):
        raise ProtocolError("binary message from the app (expected JSON text)")
    try:
        msg = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("JSON nested too deeply") from None
    if not isinstance(msg, dict):
        raise ProtocolError("JSON message is not an object")
    event = msg.get("event")
    if not isinstance(event, str) or not event:
        raise ProtocolError("message has no 'event' string")
    if id_key is not None:
        sid = msg.get(id_key)
        if sid is not None and sid != stream_id:
            raise ProtocolError(f"{event}: {id_key} {sid!r} is not this stream ({stream_id})")
    return msg


def decode_payload(value) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError("media.payload must be a base64 string")
    try:
        # what base64.b64decode(value, validate=True) does, without its Python wrapper
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"media.payload is not valid base64: {exc}") from None


def check_audio(audio: bytes, encoding: str) -> bytes:
    if encoding == "l16" and len(audio) % 2:
        raise ProtocolError("L16 payload has an odd number of bytes")
    return audio
