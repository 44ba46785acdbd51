"""The dialplan app table of the simulated switch: `APPS` (name -> `func(channel, data)`), the
`@app(name)` decorator that fills it, `AppError` (an app could not do its job), and what the media
apps share: `playback_terminators(ch)` (that variable as they read it) and `next_frame(ch)` (one
turn of their 20 ms loop).
"""
from __future__ import annotations

from ..argsplit import separate_string

APPS: dict = {}
ALL_DIGITS = '1234567890*#'


class AppError(Exception):
    """An app could not do its job (logged once with the call uuid by Channel.execute)."""


def app(name):
    def register(func):
        APPS[name] = func
        return func
    return register


def required_args(data: str, missing: str) -> list[str]:
    """An app's arguments, split as switch_separate_string does; AppError(missing) when there are none."""
    parts = separate_string(data)
    if not parts:
        raise AppError(missing)
    return parts


def playback_terminators(ch, default='*') -> str:
    value = ch.get_variable('playback_terminators', default)
    if value == 'any':
        return ALL_DIGITS
    if value == 'none':
        return ''
    return value or ''


def next_frame(ch) -> bool:
    """One turn of a media app's loop: wait for the next 20 ms frame and run the queued messages
    (nested, unless event-locked). False when the app must stop: the channel hung up or a break
    (CF_BREAK, taken here) ended it."""
    if not ch.wait_frame():
        return False
    ch.service_messages()
    return not (ch.hungup or ch.take_break())
