"""TwiML <Number> (https://www.twilio.com/docs/voice/twiml/number), a phone number <Dial> rings through
`[freeswitch] originate_dialstring` (verbs/dial_plan.py), and what it shares with <Sip>
(verbs/twiml/sip.py): `LegNoun`, the leg's own statusCallback and its parameters (`leg_params`).

Refused when the document is parsed: `url` (a TwiML document run on the callee before it is
connected: callfork's Dial cannot run a document on the dialled leg).

A leg's statusCallback gets Twilio's child-call parameters: CallSid (`CA` + the leg's UUID hex),
ParentCallSid, AccountSid, From, To, Direction `outbound-dial`, CallStatus, CallbackSource,
SequenceNumber, Timestamp, and CallDuration on `completed`, for the events statusCallbackEvent
names (initiated ringing answered completed; `completed` alone when it names none).
"""
from __future__ import annotations

import re

from ..base import Attr, AttrError, Custom, Text
from ..dial_plan import DialTarget
from ..vobiz.dial import SEND_DIGITS
from ..vobiz.element import HTTP_URL, METHOD
from .element import TwimlVerb
from .request_params import API_VERSION, e164
from .sids import call_sid
from .status_callback import StatusCallback, parse_events

PHONE = re.compile(r"\+?[0-9][0-9\-. ()]{1,24}")
NO_URL = ("url (a TwiML document run on the callee before it is connected) is not supported by callfork: "
          "its Dial cannot run a document on the dialled leg")


def _events(raw, warnings):
    try:
        return parse_events(raw)
    except ValueError as exc:
        raise AttrError(str(exc)) from None


EVENTS = Custom(_events, "initiated ringing answered completed")
LEG_ATTRIBUTES = (
    Attr("url", "leg_url", Text(), None),
    Attr("method", "leg_method", METHOD, "POST"),
    Attr("statusCallback", "status_callback", HTTP_URL, None),
    Attr("statusCallbackMethod", "status_callback_method", METHOD, "POST"),
    Attr("statusCallbackEvent", "status_callback_event", EVENTS, ("completed",)),
    Attr("machineDetection", "machine_detection", Text(), None,
         ignored="answering machine detection is not supported by callfork"),
    Attr("machineDetectionTimeout", "machine_detection_timeout", Text(), None,
         ignored="answering machine detection is not supported by callfork"),
    Attr("amdStatusCallback", "amd_status_callback", Text(), None,
         ignored="answering machine detection is not supported by callfork"),
    Attr("amdStatusCallbackMethod", "amd_status_callback_method", Text(), None,
         ignored="answering machine detection is not supported by callfork"),
)


def plain_number(text: str) -> str:
    """A number as TwiML allows it (415-123-4567, +1 (415) 123 4567) → its digits, with a leading +."""
    return ("+" if text.strip().startswith("+") else "") + re.sub(r"\D", "", text)


class LegNoun(TwimlVerb):
    """What <Number> and <Sip> share: the text is the address, the leg's statusCallback."""
    TEXT = "text"
    TEXT_REQUIRED = True
    KIND = "number"

    def check(self):
        errors = [NO_URL] if "leg_url" in self.present else []
        return errors + self.check_address()

    def check_address(self) -> list:
        return []

    @property
    def address(self) -> str:
        return self.text.strip()

    def target(self) -> DialTarget:
        return DialTarget(self.KIND, self.address, getattr(self, "send_digits", None))

    def leg_status(self):
        if not self.status_callback:
            return None
        return StatusCallback(self.status_callback, self.status_callback_method, self.status_callback_event)


class Number(LegNoun):
    name = "Number"
    ATTRIBUTES = LEG_ATTRIBUTES + (
        Attr("sendDigits", "send_digits", SEND_DIGITS, None),
        Attr("byoc", "byoc", Text(), None, ignored="a Twilio BYOC trunk; callfork dials through its dial string"),
    )

    def check_address(self):
        if self.text and not PHONE.fullmatch(self.text.strip()):
            return [f'"{self.text}" is not a phone number']
        return []

    @property
    def address(self) -> str:
        return plain_number(self.text)


def leg_params(call, leg) -> dict:
    """The request parameters of a dialled leg, as Twilio sends a child call's."""
    caller, called = e164(leg.from_number), e164(leg.to)
    return {"CallSid": call_sid(leg.uuid), "ParentCallSid": call_sid(call.uuid), "AccountSid": call.auth_id,
            "From": caller, "To": called, "Caller": caller, "Called": called, "Direction": "outbound-dial",
            "ApiVersion": API_VERSION, "CallStatus": "queued"}
