"""The typed errors of the audio_fork package (one place, so callers can catch by kind)."""
from __future__ import annotations

__all__ = ["AudioForkError", "ProtocolError", "ForkCommandError", "StreamStartError",
           "NotSupportedByFlavour"]


class AudioForkError(Exception):
    """Base class of every audio_fork error."""


class ProtocolError(AudioForkError):
    """A message from the app (or the module) that is malformed, unknown or not allowed here.
    The session logs it and goes on; it never ends a stream by itself."""


class ForkCommandError(AudioForkError):
    """`uuid_audio_fork` answered `-ERR ...` / `-USAGE: ...` (`.reply` holds the raw reply)."""

    def __init__(self, message: str, reply: str = "", command: str = ""):
        super().__init__(message)
        self.reply = reply
        self.command = command


class StreamStartError(AudioForkError):
    """A stream could not start: the app refused or did not answer, or the fork command failed."""


class NotSupportedByFlavour(AudioForkError):
    """The configured mod_audio_fork flavour cannot do this (e.g. streamed playAudio on drachtio)."""
