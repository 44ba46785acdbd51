"""SWML stop_stream: stop a stream (default: the most recently started one)."""
from ..base import Attr, Text
from .method import SwmlMethod, call_registry, call_vars


class StopStream(SwmlMethod):
    name = "stop_stream"
    ATTRIBUTES = (
        Attr("control_id", "control_id", Text(nonempty=True), None),
    )

    def run(self, call) -> None:
        """Stop the stream (the app gets `stop`, then the socket closes); waits until it ended."""
        variables = call_vars(call)
        control_id = self.control_id or variables.get("stream_control_id")
        stream = call_registry(call, "streams").get(control_id)
        if stream is None or stream.ended.is_set():
            call.error(f"stop_stream line {self.line}: no stream {control_id!r} is running")
            variables["stop_stream_result"] = "failed"
            return
        stream.stop("stop_stream")
        stream.ended.wait(5)
        variables["stop_stream_result"] = "success"
