"""SWML hangup: end the call with reason hangup, busy or decline."""
from ..base import Attr, Enum
from ..flow import EndCall
from ..hangup_codes import SOURCE_XML, CallEnd
from .method import SwmlMethod

# reason -> (Vobiz hangup code for the hangup webhook, FreeSWITCH cause)
REASONS = {"hangup": (4000, "NORMAL_CLEARING"), "busy": (3010, "USER_BUSY"), "decline": (3020, "CALL_REJECTED")}


class Hangup(SwmlMethod):
    name = "hangup"
    ATTRIBUTES = (
        Attr("reason", "reason", Enum("hangup", "busy", "decline"), "hangup"),
    )

    def run(self, call) -> None:
        code, cause = REASONS[self.reason]
        raise EndCall(CallEnd(code, SOURCE_XML, cause))
