"""<Reject reason="rejected|busy">: refuse the call without answering it: FreeSWITCH hangs the unanswered
channel up with CALL_REJECTED (SIP 603) or USER_BUSY (SIP 486). The StatusCallback's `completed` then
says `no-answer` or `busy`, as Twilio's does (https://www.twilio.com/docs/voice/twiml/reject). On a
call already answered (a <Reject> after <Say>) it ends the call with NORMAL_CLEARING."""
from __future__ import annotations

from ..base import Attr, Enum
from ..flow import EndCall
from ..hangup_codes import SOURCE_XML, CallEnd
from .element import TwimlVerb


class Reject(TwimlVerb):
    name = "Reject"
    ATTRIBUTES = (
        Attr("reason", "reason", Enum("rejected", "busy"), "rejected"),
    )

    def run(self, call) -> None:
        if call.answered:
            raise EndCall(CallEnd(4000, SOURCE_XML, "NORMAL_CLEARING"))
        if self.reason == "busy":
            raise EndCall(CallEnd(3010, SOURCE_XML, "USER_BUSY"))
        raise EndCall(CallEnd(3020, SOURCE_XML, "CALL_REJECTED"))
