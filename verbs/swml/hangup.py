"""SWML hangup: end the call with reason hangup, busy or decline."""
from ..base import Attr, Enum
from .method import SwmlMethod


class Hangup(SwmlMethod):
    name = "hangup"
    ATTRIBUTES = (
        Attr("reason", "reason", Enum("hangup", "busy", "decline"), "hangup"),
    )
