"""SWML stream: a one-way background fork of the call's audio to a WebSocket (Twilio-style wire format).

url must be wss://; ws:// is accepted while the parse option allow_insecure_ws is true (the default,
for loopback demos and tests). codec: PCMU (default, 8 kHz mu-law) or L16 (16 kHz), or the NAME@RATEh
forms (PCMU@8000h, L16@8000h, L16@16000h, L16@24000h); PCMA, OPUS and others are not supported.
"""
import uuid as uuidlib

from ..base import Attr, Enum, Text
from ..streaming import LiveStream, StreamOptions
from .method import CODEC, CUSTOM_PARAMETERS, HTTP_URL, METHOD, SwmlMethod, call_registry, call_vars, ws_url

DEFAULT_CODEC = ("PCMU@8000h", "mulaw", 8000)
TRACKS = {"inbound_track": "inbound", "outbound_track": "outbound", "both_tracks": "both"}


class StreamParams(SwmlMethod):
    """The parameters shared by `stream` and `connect` to a stream."""
    URL_KEY = "url"

    @property
    def encoding(self) -> str:
        """'mulaw' or 'l16'."""
        return (self.codec or DEFAULT_CODEC)[1]

    @property
    def sample_rate(self) -> int:
        return (self.codec or DEFAULT_CODEC)[2]

    @property
    def codec_name(self) -> str:
        return (self.codec or DEFAULT_CODEC)[0]

    def check(self):
        errors = []
        if self.url is None:     # missing or refused: already reported
            return errors
        try:
            self.url = ws_url(self.url, self.options)
        except Exception as exc:   # AttrError
            errors.append(f"{self.URL_KEY}: {exc}")
        return errors

    def stream_options(self, control_id: str, bidirectional: bool, track: str) -> StreamOptions:
        """The Twilio/SignalWire-dialect stream this method asks for."""
        token = getattr(self, "authorization_bearer_token", None)
        return StreamOptions(
            url=self.url, dialect="twilio", track=track, encoding=self.encoding, sample_rate=self.sample_rate,
            bidirectional=bidirectional, status_url=self.status_url, status_method=self.status_url_method,
            headers=[f"Authorization: Bearer {token}"] if token else [],
            custom_parameters=dict(self.custom_parameters or {}), name=self.stream_name,
            control_id=control_id, keep_call_alive=bidirectional,
            content_type=f"{'audio/x-mulaw' if self.encoding == 'mulaw' else 'audio/x-L16'};rate={self.sample_rate}")


class Stream(StreamParams):
    name = "stream"
    ATTRIBUTES = (
        Attr("url", "url", Text(nonempty=True), None, required=True),
        Attr("control_id", "control_id", Text(nonempty=True), None),
        Attr("name", "stream_name", Text(), None),
        Attr("track", "track", Enum("inbound_track", "outbound_track", "both_tracks"), "inbound_track"),
        Attr("codec", "codec", CODEC, None),
        Attr("status_url", "status_url", HTTP_URL, None),
        Attr("status_url_method", "status_url_method", METHOD, "POST"),
        Attr("authorization_bearer_token", "authorization_bearer_token", Text(), None),
        Attr("custom_parameters", "custom_parameters", CUSTOM_PARAMETERS, {}),
    )
    bidirectional = False

    def summary(self) -> str:
        return (f"stream {self.url} track={self.track} codec={self.codec_name}"
                + (f" name={self.stream_name}" if self.stream_name else "")
                + (f" control_id={self.control_id}" if self.control_id else ""))

    def run(self, call) -> None:
        """Start a one-way background stream; sets stream_result and stream_control_id."""
        call.ensure_answered()
        variables = call_vars(call)
        streams = call_registry(call, "streams")
        control_id = self.control_id or str(uuidlib.uuid4())
        running = streams.get(control_id)
        if running is not None and not running.ended.is_set():
            call.error(f"stream line {self.line}: control_id {control_id!r} is already streaming")
            variables.update(stream_result="failed", stream_control_id=control_id)
            return
        stream = LiveStream(call, self.stream_options(control_id, False, TRACKS[self.track]))
        streams[control_id] = stream
        ok = stream.start()
        variables.update(stream_result="success" if ok else "failed", stream_control_id=control_id)
