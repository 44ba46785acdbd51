"""SWML stop_record_call: stop a background recording (default: the last one started)."""
from ..base import Attr, Text
from .method import SwmlMethod, call_registry, call_vars


class StopRecordCall(SwmlMethod):
    name = "stop_record_call"
    ATTRIBUTES = (
        Attr("control_id", "control_id", Text(nonempty=True), None),
    )

    def run(self, call) -> None:
        variables = call_vars(call)
        control_id = self.control_id or variables.get("record_control_id")
        handle = call_registry(call, "recordings").get(control_id)
        if handle is None or handle.rec.finished:
            call.error(f"stop_record_call line {self.line}: no recording {control_id!r} is running")
            variables["stop_record_call_result"] = "failed"
            return
        handle.stop()
        variables["stop_record_call_result"] = "success"
