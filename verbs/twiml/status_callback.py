"""A Twilio app's call status callbacks (https://www.twilio.com/docs/voice/api/call-resource#statuscallback):
`initiated`, `ringing`, `answered` and `completed`, each posted through the durable outbox (in order,
signed with X-Twilio-Signature) to the call's StatusCallback when the app asked for that event.

A number's own calls (`[[numbers]] api = "twilio"`) get `completed` at their `hangup_url`, as an
incoming number's StatusCallback does on Twilio; a call placed through the REST API names its URL,
method and events (`StatusCallback`, `StatusCallbackMethod`, `StatusCallbackEvent`).
"""
from __future__ import annotations

import email.utils
import time

EVENTS = ("initiated", "ringing", "answered", "completed")
CALL_STATUS = {"initiated": "initiated", "ringing": "ringing", "answered": "in-progress"}


def parse_events(raw) -> tuple:
    """StatusCallbackEvent as a request gives it (a list, or one space-separated string) → the events;
    ValueError naming an unknown one. None or empty: `completed` only, Twilio's default."""
    words = []
    for item in (raw if isinstance(raw, (list, tuple)) else [raw or ""]):
        words.extend(str(item).replace(",", " ").split())
    bad = [w for w in words if w.lower() not in EVENTS]
    if bad:
        raise ValueError(f"StatusCallbackEvent: {bad[0]!r} is not one of {', '.join(EVENTS)}")
    chosen = {w.lower() for w in words} | {"completed"}
    return tuple(e for e in EVENTS if e in chosen)


def final_status(answered: bool, code: int) -> str:
    """CallStatus of the `completed` event: completed once answered, else why it was not (Vobiz codes
    of verbs/hangup_codes.py: 3010 busy, 3000/6010 no answer, 1000 canceled; 3020 rejected is
    no-answer, as Twilio reports a <Reject reason="rejected">: https://www.twilio.com/docs/voice/twiml/reject)."""
    if answered:
        return "completed"
    return {3010: "busy", 3000: "no-answer", 3020: "no-answer", 6010: "no-answer",
            1000: "canceled"}.get(code, "failed")


def rfc2822(epoch: float | None = None) -> str:
    return email.utils.formatdate(time.time() if epoch is None else epoch, usegmt=True)


class StatusCallback:
    """Where one call's status events go: `url`, `method`, the `events` the app asked for; the
    SequenceNumber counts the callbacks sent for the call, from 0."""

    def __init__(self, url: str, method: str = "POST", events=("completed",)):
        self.url = url or ""
        self.method = (method or "POST").upper()
        self.events = tuple(events)
        self.sequence = 0

    def wants(self, event: str) -> bool:
        return bool(self.url) and event in self.events

    def fields(self, base: dict, event: str, **extra) -> dict:
        """`base` (the call's request parameters) as the callback of `event`."""
        params = dict(base)
        if event in CALL_STATUS:
            params["CallStatus"] = CALL_STATUS[event]
        params.update(CallbackSource="call-progress-events", Timestamp=rfc2822(),
                      SequenceNumber=str(self.sequence))
        params.update({k: "" if v is None else str(v) for k, v in extra.items()})
        return params

    def send(self, post, base: dict, event: str, **extra) -> bool:
        """Post `event` with `post(url, method, params, event_name)` if the app asked for it."""
        if not self.wants(event):
            return False
        post(self.url, self.method, self.fields(base, event, **extra), f"status:{event}")
        self.sequence += 1
        return True


def completed_extra(end, answered: bool, duration_s: int, error: str) -> dict:
    """What the `completed` callback adds to the request parameters: the final CallStatus, CallDuration
    (whole seconds of the call, 0 when it was never answered), and callfork's own error text and
    FreeSWITCH cause (extensions Twilio does not send; an app that ignores them loses nothing)."""
    return {"CallStatus": final_status(answered, end.code), "CallDuration": str(duration_s if answered else 0),
            "Duration": str(max(1, -(-duration_s // 60)) if answered else 0),
            "HangupCause": end.fs_cause, "ErrorMessage": error or ""}
