"""SWML answer: answer the call."""
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
