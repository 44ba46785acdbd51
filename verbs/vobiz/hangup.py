"""<Hangup>: end the call (rejects it when first), optionally scheduled."""
from ..base import Attr, Enum, Int
from ..flow import EndCall
from ..hangup_codes import SOURCE_XML, CallEnd
from .element import VobizVerb


class Hangup(VobizVerb):
    name = "Hangup"
    ATTRIBUTES = (
        # None: "rejected" when the call is not answered yet, else a normal hangup (vobiz.md §2.5)
        Attr("reason", "reason", Enum("rejected", "busy"), None),
        Attr("schedule", "schedule", Int(minimum=1), None),   # seconds; None = now
    )

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """Hang up now (a call not answered yet is rejected: not billed), or schedule it."""
        if self.schedule:
            call.session.api(f"sched_hangup +{self.schedule} {call.uuid} ALLOTTED_TIMEOUT")
            call.timeline("hangup_scheduled", {"seconds": self.schedule})
            return
        # no reason: "rejected" before answer (not billed), a normal hangup after; an explicit
        # reason is the cause whenever it comes (Plivo: rejected → CALL_REJECTED, busy → USER_BUSY)
        reason = self.reason or ("rejected" if not call.answered else None)
        if reason == "busy":
            raise EndCall(CallEnd(3010, SOURCE_XML, "USER_BUSY"))
        if reason == "rejected":
            raise EndCall(CallEnd(3020, SOURCE_XML, "CALL_REJECTED"))
        raise EndCall(CallEnd(4000, SOURCE_XML, "NORMAL_CLEARING"))
