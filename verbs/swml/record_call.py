"""SWML record_call: start a background recording of the call."""
from ..base import Attr, Enum, Float, Int, Text
from .method import BOOL, HTTP_URL, SwmlMethod


class RecordCall(SwmlMethod):
    name = "record_call"
    ATTRIBUTES = (
        Attr("control_id", "control_id", Text(nonempty=True), None),
        Attr("stereo", "stereo", BOOL, False),
        Attr("format", "format", Enum("wav", "mp3", "mp4"), "wav"),
        Attr("direction", "direction", Enum("speak", "listen", "both"), "both"),
        Attr("terminators", "terminators", Text(pattern=r"[0-9*#]*", pattern_desc="keys from 0-9, *, #"), ""),
        Attr("beep", "beep", BOOL, False),
        Attr("input_sensitivity", "input_sensitivity", Float(0, 100), 44.0),
        Attr("initial_timeout", "initial_timeout", Float(minimum=0), 0.0),
        Attr("end_silence_timeout", "end_silence_timeout", Float(minimum=0), 0.0),
        Attr("max_length", "max_length", Int(minimum=1), None),
        Attr("status_url", "status_url", HTTP_URL, None),
    )
