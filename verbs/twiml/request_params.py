"""The parameters Twilio sends with every request about a call (https://www.twilio.com/docs/voice/twiml#request-parameters),
for the calls whose app is a Twilio app: `twilio_params(ctx, **extra)` is what `CallContext.params`
gives them.

Numbers are sent as Twilio sends PSTN numbers, in E.164 with a `+` (a number of 8 or more digits;
anything else, such as a SIP user or a short extension, as FreeSWITCH gave it). `Direction` is
`inbound` or `outbound-api` (a call placed through the REST API).
"""
from __future__ import annotations

import re

from .sids import call_sid

API_VERSION = "2010-04-01"
_DIGITS = re.compile(r"\+?(\d{8,15})")


def e164(number: str) -> str:
    match = _DIGITS.fullmatch(number or "")
    return "+" + match.group(1) if match else (number or "")


def twilio_params(ctx, **extra) -> dict:
    """The standard request parameters of call `ctx`, plus `extra` (values as text)."""
    caller, called = e164(ctx.from_number), e164(ctx.to_number)
    p = {
        "CallSid": call_sid(ctx.uuid),
        "AccountSid": ctx.auth_id,
        "From": caller,
        "To": called,
        "Caller": caller,
        "Called": called,
        "CallStatus": ctx.call_status(),
        "Direction": "outbound-api" if ctx.direction == "outbound" else "inbound",
        "ApiVersion": API_VERSION,
    }
    if ctx.caller_name and ctx.caller_name not in (ctx.from_number, caller):
        p["CallerName"] = ctx.caller_name
    p.update({k: "" if v is None else str(v) for k, v in extra.items()})
    return p
