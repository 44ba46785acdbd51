"""SWML connect: the method's two forms. `to: "stream:wss://..."` is a bidirectional stream that
blocks like a dial (this module); every other connect (a phone number or sip: URI in `to`,
`serial`, `parallel`, `serial_parallel`) dials: verbs/swml/connect_dial.py.
"""
import uuid as uuidlib

from ..base import Attr, AttrError, Custom, NotSupportedValue, Text
from ..streaming import LiveStream
from .connect_dial import ConnectDial
from .method import CODEC, CUSTOM_PARAMETERS, HTTP_URL, METHOD, StepResult, call_vars, json_type
from .stream import StreamParams

ONLY = 'a stream connect takes only the stream parameters'


def _to(raw, warnings):
    if not isinstance(raw, str):
        raise AttrError(f"must be a string, not {json_type(raw)}")
    text = raw.strip()
    if not text.lower().startswith("stream:"):
        raise NotSupportedValue(f'connect to "{text}" is not supported by callfork; {ONLY}')
    return text[len("stream:"):].strip()


def is_stream(to) -> bool:
    return isinstance(to, str) and to.strip().lower().startswith("stream:")


class Connect(StreamParams):
    name = "connect"
    ATTRIBUTES = (
        Attr("to", "url", Custom(_to, "stream:wss://..."), None, required=True),
        Attr("codec", "codec", CODEC, None),
        Attr("name", "stream_name", Text(), None),
        Attr("status_url", "status_url", HTTP_URL, None),
        Attr("status_url_method", "status_url_method", METHOD, "POST"),
        Attr("authorization_bearer_token", "authorization_bearer_token", Text(), None),
        Attr("custom_parameters", "custom_parameters", CUSTOM_PARAMETERS, {}),
        Attr("realtime", "realtime", Text(), None, ignored="callfork streams in real time anyway"),
    )
    URL_KEY = "to"
    bidirectional = True
    track = "inbound_track"
    control_id = None

    @classmethod
    def from_value(cls, value, line, column, options):
        if isinstance(value, dict) and not is_stream(value.get("to")):
            return ConnectDial.from_value(value, line, column, options)
        if isinstance(value, dict):
            other = [k for k in value if k not in cls.attribute_names()]
            if other:
                verb = cls(line, column)
                verb.params = value
                return StepResult(verb, [], [f"connect with {', '.join(map(str, other))} is not supported by callfork; {ONLY}"])
        return super().from_value(value, line, column, options)

    def summary(self) -> str:
        return f"connect stream:{self.url} (bidirectional) codec={self.codec_name}"

    def run(self, call) -> None:
        """A bidirectional stream that blocks until it ends (the app closes the socket, or an
        error); the app's `media` plays to the caller. Sets connect_result."""
        call.ensure_answered()
        stream = LiveStream(call, self.stream_options(str(uuidlib.uuid4()), True, "inbound"))
        ok = stream.start()
        call_vars(call)["connect_result"] = "connected" if ok else "failed"
        if ok:
            stream.wait()
