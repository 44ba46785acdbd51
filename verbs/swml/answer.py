"""SWML answer: answer the call (max_duration: a hangup scheduled that many seconds later)."""
from ..base import Attr, Int, Text
from .method import SwmlMethod


class Answer(SwmlMethod):
    name = "answer"
    ATTRIBUTES = (
        Attr("max_duration", "max_duration", Int(minimum=1), 14400),   # seconds
        Attr("codecs", "codecs", Text(), None),
        Attr("username", "username", Text(), None),
        Attr("password", "password", Text(), None),
    )

    def run(self, call) -> None:
        call.ensure_answered()
        if not getattr(call, "_swml_max_duration", None):
            call._swml_max_duration = self.max_duration
            call.session.api(f"sched_hangup +{self.max_duration} {call.uuid} ALLOTTED_TIMEOUT")
