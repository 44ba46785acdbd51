"""SWML stream: a one-way background fork of the call's audio to a WebSocket (Twilio-style wire format).

url must be wss://; ws:// is accepted while the parse option allow_insecure_ws is true (the default,
for loopback demos and tests). codec: PCMU (default, 8 kHz mu-law) or L16 (16 kHz), or the NAME@RATEh
forms (PCMU@8000h, L16@8000h, L16@16000h, L16@24000h); PCMA, OPUS and others are not supported.
"""
from ..base import Attr, Enum, Text
from .method import CODEC, CUSTOM_PARAMETERS, HTTP_URL, METHOD, SwmlMethod, ws_url

DEFAULT_CODEC = ("PCMU@8000h", "mulaw", 8000)


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
