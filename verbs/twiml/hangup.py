"""<Hangup>: end the call. Twilio answers a call whose TwiML does anything but <Reject>, so a <Hangup>
first answers, then hangs up (https://www.twilio.com/docs/voice/twiml/reject: "Any other response
will result in an answered call"); to refuse a call unanswered, use <Reject>."""
from __future__ import annotations

from ..flow import EndCall
from ..hangup_codes import SOURCE_XML, CallEnd
from .element import TwimlVerb


class Hangup(TwimlVerb):
    name = "Hangup"

    def run(self, call) -> None:
        call.ensure_answered()
        raise EndCall(CallEnd(4000, SOURCE_XML, "NORMAL_CLEARING"))
