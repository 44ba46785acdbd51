"""TwiML <Stop><Stream name> (https://www.twilio.com/docs/voice/twiml/stream#stop-a-stream): stop the
call's <Start> stream of that name (its app gets `stop`, its statusCallback `stream-stopped`).
callfork's choice for a <Stream> without a name: every <Start> stream of the call is stopped. A
name that matches no running stream is logged and the next verb runs. A <Connect> stream is not
stopped here (it holds the call until it ends)."""
from .element import TwimlVerb
from .stream import twiml_streams


class Stop(TwimlVerb):
    name = "Stop"
    CHILDREN = ("Stream",)

    def check(self):
        return [] if self.children else ["<Stop> needs a <Stream name=...>"]

    def run(self, call) -> None:
        for noun in self.children:
            found = [s for s in twiml_streams(call) if not s.options.bidirectional
                     and (noun.stream_name is None or s.options.name == noun.stream_name)]
            if not found:
                call.error(f"<Stop> line {self.line}: no running stream "
                           + (f"named {noun.stream_name!r}" if noun.stream_name else "to stop"))
            for stream in found:
                stream.stop("stop_stream")
