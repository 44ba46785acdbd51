"""SWML stop_record_call: stop a background recording (default: the last one started)."""
from ..base import Attr, Text
from .method import SwmlMethod


class StopRecordCall(SwmlMethod):
    name = "stop_record_call"
    ATTRIBUTES = (
        Attr("control_id", "control_id", Text(nonempty=True), None),
    )
