"""<Stream>: fork the call's audio to a WebSocket (the element's text), optionally bidirectional.

Decision on keepCallAlive without bidirectional: vobiz.md's table says it "requires bidirectional",
but the original Stream page (seed 001) describes keepCallAlive on its own ("this stream element runs
alone"). callfork accepts it with a warning and honours it (the document waits for the stream to end).
"""
import re

from ..base import Attr, AttrError, Custom, Enum, Int, Text
from ..streaming import LiveStream, StreamOptions
from .element import BOOL, HTTP_URL, METHOD, VobizVerb

CONTENT_TYPES = {
    "audio/x-l16;rate=8000": ("audio/x-l16", 8000),
    "audio/x-l16;rate=16000": ("audio/x-l16", 16000),
    "audio/x-mulaw;rate=8000": ("audio/x-mulaw", 8000),
}


def _content_type(raw, warnings):
    value = re.sub(r"\s+", "", str(raw)).lower()
    if value in CONTENT_TYPES:
        return value
    allowed = ", ".join(CONTENT_TYPES)
    if value == "audio/x-l16;rate=24000":
        raise AttrError("audio/x-l16;rate=24000 is refused by Vobiz for the inbound stream (the media "
                        "server declines the WebSocket upgrade); 24 kHz is allowed only for playAudio. "
                        f"Allowed: {allowed}")
    raise AttrError(f'"{raw}" is not allowed; allowed: {allowed}')


def _extra_headers(raw, warnings):
    text = str(raw).strip()
    size = len(text.encode("utf-8"))
    if size > 512:
        raise AttrError(f"is {size} bytes; the limit is 512")
    headers = {}
    if not text:
        return headers
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9]+", key) or not re.fullmatch(r"[A-Za-z0-9]+", value):
            raise AttrError(f'"{pair}" is not key=value with letters and digits only ([A-Za-z0-9]); '
                            "the form is k=v,k2=v2")
        if key in headers:
            raise AttrError(f'key "{key}" is given twice')
        headers[key] = value
    return headers


class Stream(VobizVerb):
    name = "Stream"
    TEXT = "ws_url"
    ATTRIBUTES = (
        Attr("bidirectional", "bidirectional", BOOL, False),
        Attr("audioTrack", "audio_track", Enum("inbound", "outbound", "both"), "inbound"),
        Attr("streamTimeout", "stream_timeout", Int(minimum=1), 86400),
        Attr("statusCallbackUrl", "status_callback_url", HTTP_URL, None),
        Attr("statusCallbackMethod", "status_callback_method", METHOD, "POST"),
        Attr("contentType", "content_type", Custom(_content_type, "content type"), "audio/x-l16;rate=8000"),
        Attr("extraHeaders", "extra_headers", Custom(_extra_headers, "k=v,k2=v2"), {}),
        Attr("maxRetries", "max_retries", Int(0, 10, clamp=True), 0),
        Attr("keepCallAlive", "keep_call_alive", BOOL, False),
        Attr("noiseCancellation", "noise_cancellation", Text(), None,
             ignored="Plivo-only attribute, not supported by Vobiz or callfork"),
        Attr("noiseCancellationLevel", "noise_cancellation_level", Text(), None,
             ignored="Plivo-only attribute, not supported by Vobiz or callfork"),
    )

    @classmethod
    def read_attributes(cls, raw):
        raw = dict(raw)
        url = raw.pop("url", None)
        result = super().read_attributes(raw)
        if url is not None:
            result.errors.append("the WebSocket URL is the element's text, not a url attribute: "
                                 "<Stream>wss://...</Stream>")
        return result

    def read_text(self, text, ctx):
        if not text.strip() and self._url_attribute:
            return
        super().read_text(text, ctx)

    def read_content(self, element, ctx):
        self._url_attribute = "url" in element.attrib
        super().read_content(element, ctx)

    @property
    def encoding(self) -> str:
        """audio/x-l16 or audio/x-mulaw (the inbound, callfork → app, format)."""
        return CONTENT_TYPES[self.content_type][0]

    @property
    def sample_rate(self) -> int:
        return CONTENT_TYPES[self.content_type][1]

    @property
    def extra_headers_text(self) -> str:
        """extraHeaders as given (k=v,k2=v2)."""
        return ",".join(f"{k}={v}" for k, v in self.extra_headers.items())

    def check(self):
        errors = []
        if not self.ok("bidirectional", "audio_track", "keep_call_alive"):
            return errors
        if self.bidirectional and self.audio_track != "inbound":
            errors.append(f'bidirectional="true" needs audioTrack="inbound" (or none); '
                          f'audioTrack="{self.audio_track}" makes Vobiz hang up the call')
        if self.keep_call_alive and not self.bidirectional:
            self.warnings.append('keepCallAlive="true" without bidirectional="true": the document '
                                 "still waits for the stream to end")
        return errors

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """Start the stream (answering the call). keepCallAlive: the document waits until the
        stream ends; otherwise it runs in the background while the next verbs execute."""
        call.ensure_answered()
        stream = LiveStream(call, self.stream_options())
        if stream.start() and self.keep_call_alive:
            stream.wait()

    def stream_options(self) -> StreamOptions:
        return StreamOptions(
            url=self.url, dialect="vobiz", track=self.audio_track,
            encoding="mulaw" if self.encoding == "audio/x-mulaw" else "l16", sample_rate=self.sample_rate,
            bidirectional=self.bidirectional, status_url=self.status_callback_url,
            status_method=self.status_callback_method, stream_timeout=self.stream_timeout,
            max_retries=self.max_retries, keep_call_alive=self.keep_call_alive,
            extra_headers=dict(self.extra_headers), content_type=self.content_type,
            attributes={
                "bidirectional": str(self.bidirectional).lower(), "audioTrack": self.audio_track,
                "streamTimeout": str(self.stream_timeout), "statusCallbackUrl": self.status_callback_url or "",
                "statusCallbackMethod": self.status_callback_method, "contentType": self.content_type,
                "extraHeaders": self.extra_headers_text, "maxRetries": str(self.max_retries),
                "keepCallAlive": str(self.keep_call_alive).lower()})
