"""TwiML <Stream> (https://www.twilio.com/docs/voice/twiml/stream), the noun of <Connect>, <Start> and
<Stop>: what stream it asks for (`stream_options`) and Twilio's stream status callbacks.

The stream is a Twilio Media Stream on verbs/streaming.py's LiveStream (the `twilio` dialect,
mu-law 8 kHz): its `start` names the stream and the call by Twilio's SIDs (`MZ` + the stream id's
hex, `CA` + the call UUID's hex: verbs/twiml/sids.py), so an app that acts on the call through
Twilio's REST API with that callSid reaches it; the <Parameter> children become its
customParameters. <Connect> makes it bidirectional (the inbound track only: `track` is ignored
there, as on Twilio); <Start> one-way with `track` inbound_track | outbound_track | both_tracks.

statusCallback (absolute, or relative to the document's URL; form, GET or POST, signed like every webhook of a Twilio call): `stream-started`
when the app's socket is up and the audio flows, `stream-error` (with StreamError) when the socket
cannot be opened or fails (the app closing it is no error: it is how a Twilio app ends a stream),
`stream-stopped` when a started stream ends, each with AccountSid,
CallSid, StreamSid, StreamName (the name, or the StreamSid when the stream has none) and Timestamp
(ISO 8601, UTC).
"""
from __future__ import annotations

import datetime

from ..base import Attr, Enum, Text, Url
from ..flow import NextDocument
from ..streaming import APP_CLOSED, StreamOptions
from ..swml.stream import TRACKS
from ..vobiz.element import METHOD, WS
from .element import REL_URL, TwimlVerb, resolve
from .sids import call_sid, stream_sid

EVENTS = {"StartStream": "stream-started", "DroppedStream": "stream-error", "Ended": "stream-stopped"}


class Stream(TwimlVerb):
    name = "Stream"
    CHILDREN = ("Parameter",)
    ATTRIBUTES = (
        Attr("url", "stream_url", Url(WS), None),
        Attr("name", "stream_name", Text(max_bytes=256), None),
        Attr("track", "track", Enum(*TRACKS), "inbound_track"),
        Attr("statusCallback", "status_callback", REL_URL, None),
        Attr("statusCallbackMethod", "status_callback_method", METHOD, "POST"),
    )
    parent = "Start"

    def placed_in(self, parent_name: str) -> None:
        self.parent = parent_name

    @property
    def parameters(self) -> dict:
        return {p.param_name: p.value for p in self.children if p.name == "Parameter"}

    def check(self):
        errors = []
        if self.parent == "Stop":
            if self.children:
                errors.append("<Parameter> has no meaning in <Stop><Stream>")
            return errors
        if self.stream_url is None and self.ok("stream_url"):
            errors.append("url is required (the app's ws:// or wss:// WebSocket)")
        if self.parent == "Connect" and "track" in self.present and self.track != "inbound_track":
            self.warnings.append(f'track="{self.track}" is ignored: <Connect><Stream> carries the inbound track')
        names = [p.param_name for p in self.children if p.name == "Parameter"]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            errors.append(f"<Parameter> name {repeated[0]!r} is given twice")
        return errors

    def stream_options(self, bidirectional: bool, call=None) -> StreamOptions:
        """The stream asked for; `call`: the running call, whose document URL a relative
        statusCallback is resolved against."""
        return StreamOptions(
            url=self.stream_url, dialect="twilio", track="inbound" if bidirectional else TRACKS[self.track],
            encoding="mulaw", sample_rate=8000, bidirectional=bidirectional,
            status_url=resolve(call, self.status_callback), status_method=self.status_callback_method,
            custom_parameters=self.parameters, name=self.stream_name, keep_call_alive=bidirectional,
            content_type="audio/x-mulaw;rate=8000", twiml=True, on_status=stream_status)


def stream_status(stream, event: str, fields: dict) -> None:
    """A LiveStream status event → Twilio's stream statusCallback (what it has one for); also the
    `on_status` of a stream started through Twilio's REST API (callfork/twilio_api.py)."""
    kind = EVENTS.get(event)
    if event == "DroppedStream" and fields.get("Error") == APP_CLOSED:
        kind = None         # the app closing its socket is how a Twilio app ends a stream
    o = stream.options
    if kind is None or not o.status_url or (kind == "stream-stopped" and not stream.started):
        return
    call = stream.call
    sid = stream_sid(stream.stream_id)
    params = {"AccountSid": call.auth_id, "CallSid": call_sid(call.uuid), "StreamSid": sid,
              "StreamName": o.name or sid, "StreamEvent": kind,
              "Timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
              .replace("+00:00", "Z")}
    if kind == "stream-error":
        params["StreamError"] = fields.get("Error") or stream.error or "the stream failed"
    call.post(o.status_url, o.status_method, params, f"stream:{kind}")


class StreamVerb(TwimlVerb):
    """What <Connect> and <Start> share: <Stream> children, and an `action` whose document replaces
    the rest once the verb is done (requested with the call's parameters)."""
    CHILDREN = ("Stream",)
    ATTRIBUTES = (
        Attr("action", "action", REL_URL, None),
        Attr("method", "method", METHOD, "POST"),
    )

    def follow_action(self, call) -> None:
        if self.action:
            raise NextDocument(resolve(call, self.action), self.method, call.params(), "action")


def twiml_streams(call):
    """The call's live TwiML streams."""
    return [s for s in list(call.streams.values()) if s.options.twiml and not s.ended.is_set()]
