"""App-side WebSocket dialects: one class per protocol that owns the per-stream counters, builds
the JSON text sent to the app and parses what the app sends back (`vobiz`, `twilio`)."""
from .base import AppMessage, PlayAudio, Checkpoint, ClearAudio, StopStream, SendDigits
from .vobiz import VobizDialect
from .twilio import TwilioDialect

__all__ = ["AppMessage", "PlayAudio", "Checkpoint", "ClearAudio", "StopStream", "SendDigits",
           "VobizDialect", "TwilioDialect", "make_dialect"]


def make_dialect(name: str, **kwargs):
    """`'vobiz'` or `'twilio'` -> a new dialect instance for one stream."""
    if name == "vobiz":
        return VobizDialect(**kwargs)
    if name == "twilio":
        return TwilioDialect(**kwargs)
    raise ValueError(f"unknown dialect {name!r} (expected 'vobiz' or 'twilio')")
