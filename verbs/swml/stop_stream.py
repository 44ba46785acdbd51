"""SWML stop_stream: stop a stream (default: the most recently started one)."""
from ..base import Attr, Text
from .method import SwmlMethod


class StopStream(SwmlMethod):
    name = "stop_stream"
    ATTRIBUTES = (
        Attr("control_id", "control_id", Text(nonempty=True), None),
    )
