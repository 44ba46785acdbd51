"""Typed errors of the ESL layer (esl_app): the one "call is gone" exception, timeouts, -ERR replies,
connection loss, malformed frames and configuration errors."""


class CallGone(Exception):
    """The call is gone: CHANNEL_HANGUP was seen, or the socket disconnected.

    `.cause` is the FreeSWITCH hangup cause name (e.g. ``NORMAL_CLEARING``) or None when the
    socket went away without a CHANNEL_HANGUP.
    """

    def __init__(self, cause=None, uuid=None, message=None):
        self.cause = cause
        self.uuid = uuid
        super().__init__(message or 'call %s is gone (%s)' % (uuid or '?', cause or 'disconnected'))


class ESLTimeout(Exception):
    """A wait on FreeSWITCH (reply, execution, event) timed out."""


class ESLError(Exception):
    """FreeSWITCH answered ``-ERR ...``; `.reply` holds the reply text (or None)."""

    def __init__(self, message, reply=None):
        super().__init__(message)
        self.reply = reply


class ESLDisconnected(ESLError):
    """The ESL socket is not connected (never was, or was lost). Subclass of ESLError."""

    def __init__(self, message='ESL connection is not connected'):
        super().__init__(message, reply=None)


class ESLProtocolError(ESLError):
    """A frame that cannot be parsed (e.g. a bad Content-Length): the stream is out of sync."""

    def __init__(self, message):
        super().__init__(message, reply=None)


class ConfigError(Exception):
    """The configuration (TOML file or CALLFORK_* environment) is invalid."""
