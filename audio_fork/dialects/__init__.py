"""App-side WebSocket dialects: one class per protocol that owns the per-stream counters, builds
the JSON text sent to the app and parses what the app sends back (`vobiz`, `twilio`)."""
from .base import AppMessage, PlayAudio, Checkpoint, ClearAudio, StopStream, SendDigits
from .vobiz import VobizDialect
from .twilio import TwilioDialect

__all__ = ["AppMessage", "PlayAudio", "Checkpoint", "ClearAudio", "StopStream", "SendDigits",
           "VobizDialect", "TwilioDialect", "make_dialect", "dialect_for"]


def make_dialect(name: str, **kwargs):
    """`'vobiz'` or `'twilio'` -> a new dialect instance for one stream."""
    if name == "vobiz":
        return VobizDialect(**kwargs)
    if name == "twilio":
        return TwilioDialect(**kwargs)
    raise ValueError(f"unknown dialect {name!r} (expected 'vobiz' or 'twilio')")


def dialect_for(spec):
    """The dialect a StreamSpec asks for, set up from it."""
    common = dict(stream_id=spec.stream_id, call_id=spec.call_uuid, account_id=spec.account_id,
                  track=spec.track, encoding=spec.encoding, sample_rate=spec.sample_rate)
    if spec.dialect == "vobiz":
        return make_dialect("vobiz", extra_headers=spec.extra_headers,
                            extra_headers_mode=spec.extra_headers_mode, **common)
    common.update(stream_id=spec.app_stream_id or spec.stream_id, call_id=spec.app_call_id or spec.call_uuid)
    return make_dialect(spec.dialect, custom_parameters=spec.custom_parameters, **common)
