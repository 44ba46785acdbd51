"""One stream of call audio to an app's WebSocket, as the verbs and the REST API see it: `LiveStream`.

It wraps `audio_fork.StreamSession` (the relay does the audio) and owns what a stream means on a
call: its status callbacks (Vobiz StartStream / PlayedStream / ClearedAudio / DroppedStream /
DegradedStream / StopStream as form posts, SWML `calling.call.stream` JSON, or what a TwiML stream's
`on_status` makes of them: verbs/twiml/stream.py), its lifetime
(`streamTimeout`, the app's `stop`, REST DELETE, SWML `stop_stream`, WS failure, hangup), its
reconnects (`maxRetries`: a new stream id and a new `start` each time, the old fork stopped
first), its record in the store, and DTMF forwarding. Hangup closes the app socket with 1000 and
sends no StopStream (as Vobiz). StopStream is sent only for stops callfork initiated (the app's
`stop`, streamTimeout, REST DELETE, SWML stop_stream), per the Vobiz docs. Repeated DegradedStream
(per kind) and ClearedAudio callbacks are coalesced (verbs/stream_status.py): the first at once,
then at most one per DEGRADED_INTERVAL_S / CLEARED_INTERVAL_S with the count of what it stands for.
"""
from __future__ import annotations

import functools
import logging
import time
import uuid as uuidlib
from dataclasses import dataclass, field

import gevent
import gevent.event

from audio_fork import StreamSession, StreamSpec, StreamStartError

from . import idle_audio
from .stream_status import StatusCoalescer
from .twiml.sids import call_sid, stream_sid

log = logging.getLogger("callfork.stream")

# why a stream ended -> whether Vobiz posts StopStream (server-side stops only)
SERVER_STOPS = {"app_stop", "timeout", "api", "stop_stream"}

APP_CLOSED = "connection disconnected with the remote service"   # the DroppedStream of an app's close

# repeated status callbacks: the first at once, then at most one per interval (verbs/stream_status.py)
DEGRADED_INTERVAL_S = 10.0     # per kind of DegradedStream (its Error)
CLEARED_INTERVAL_S = 1.0       # ClearedAudio: an app that clears in a tight loop


@dataclass
class StreamOptions:
    url: str
    dialect: str = "vobiz"               # 'vobiz' (Vobiz XML / REST) | 'twilio' (SWML)
    track: str = "inbound"               # inbound | outbound | both
    encoding: str = "l16"                # l16 | mulaw
    sample_rate: int = 8000
    bidirectional: bool = False
    status_url: str | None = None
    status_method: str = "POST"
    stream_timeout: int = 86400
    max_retries: int = 0
    keep_call_alive: bool = False
    extra_headers: dict = field(default_factory=dict)      # Vobiz extraHeaders -> X-VH-* in callbacks
    headers: list = field(default_factory=list)            # handshake headers (Authorization: Bearer ...)
    custom_parameters: dict = field(default_factory=dict)  # SWML/Twilio start.customParameters
    name: str | None = None                                # SWML name
    control_id: str | None = None                          # SWML control_id
    content_type: str = "audio/x-l16;rate=8000"            # as the document said (for callbacks/records)
    attributes: dict = field(default_factory=dict)         # the Vobiz attributes echoed in callbacks
    # a TwiML stream: the app sees Twilio's MZ/CA sids, and `on_status(stream, event, fields)` gets
    # every status event (this module's names, and "Ended" last) instead of the SWML callbacks
    twiml: bool = False
    on_status: object = None


class LiveStream:
    def __init__(self, call, options: StreamOptions):
        self.call = call
        self.options = options
        self.stream_id = str(uuidlib.uuid4())
        self.control_id = options.control_id or self.stream_id
        self.session: StreamSession | None = None
        self.retries_left = max(0, options.max_retries)
        self.ended = gevent.event.Event()
        self.end_reason: str | None = None
        self.error = ""
        self._stop_reason: str | None = None
        self._timer = None
        self._started_at = None
        self._status = StatusCoalescer()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> bool:
        """Connect and fork (with retries). True once audio flows to the app's socket."""
        call = self.call
        call.streams[self.stream_id] = self
        call.hook_stream_events(_forward_dtmf, route_module_event, MODULE_EVENTS)
        try:
            self.options.url = call.services.check_url(self.options.url, ("ws", "wss"))
        except ValueError as exc:  # e.g. a private address while [server] allow_private_urls = false
            self.error = f"{self.options.url}: {exc}"
            call.error(f"stream {self.stream_id}: {self.error}")
            self._callback("DroppedStream", Error=self.error)
            self._end("failed")
            call.stream_forked(self, False)
            return False
        self._timer = gevent.spawn_later(self.options.stream_timeout, self.stop, "timeout")
        try:
            while True:
                opened = self._open()
                call.stream_forked(self, opened)
                if opened:
                    return True
                if not self._retry():
                    self._end("failed")
                    return False
        except Exception as exc:  # CallGone, an ESL error: the stream ends here, the call goes on
            if not self.ended.is_set():
                self.error = self.error or repr(exc)
                self._end("hangup" if call.session.gone else "failed")
            raise

    @property
    def started(self) -> bool:
        """The app's socket was up and the audio flowed (its StartStream was reported)."""
        return self._started_at is not None

    @property
    def needs_written_frames(self) -> bool:
        """The stream only works while FreeSWITCH writes frames to the caller: the jambonz module
        mixes the app's audio into them, and a stereo fork takes its second track from them."""
        return self.options.bidirectional or self.options.track != "inbound"

    @property
    def injects_audio(self) -> bool:
        """mod_audio_fork itself mixes the app's audio into the written frames (a write-replace bug)."""
        return self.options.bidirectional and self.call.config.audio_fork.flavor == "jambonz"

    def _open(self) -> bool:
        call, o = self.call, self.options
        spec = StreamSpec(
            stream_id=self.stream_id, call_uuid=call.uuid, url=o.url, dialect=o.dialect, track=o.track,
            encoding=o.encoding, sample_rate=o.sample_rate, bidirectional=o.bidirectional,
            headers=list(o.headers), custom_parameters=dict(o.custom_parameters),
            extra_headers=dict(o.extra_headers),
            extra_headers_mode=call.config.audio_fork.extra_headers_mode,
            l16_byte_order=call.config.byte_order_for(call.number), flavor=call.config.audio_fork.flavor,
            max_playout_seconds=call.config.audio_fork.max_playout_seconds,
            account_id=call.auth_id, resolve=call.services.connect_addresses,
            app_stream_id=stream_sid(self.stream_id) if o.twiml else "",
            app_call_id=call_sid(call.uuid) if o.twiml else "")
        self.session = StreamSession(spec, call.services.relay, call.session.api, self._on_event,
                                     may_kill_audio=functools.partial(_only_idle_writer_runs, call.session))
        self._record(status="in-progress", start_time=time.time())
        try:
            call.ensure_answered()
            self.session.start()
        except StreamStartError as exc:
            self.error = str(exc)
            call.error(f"stream {self.stream_id} to {o.url}: {exc}")
            # the session already reported it (app_failed / module_failed -> DroppedStream)
            self._record(status="failed", error=self.error, end_time=time.time())
            return False
        return True

    def _reopen(self) -> bool:
        """A reconnect after a drop (its own greenlet): the new fork is a new media bug, so
        recordings that mix in the stream must move behind it again."""
        opened = self._open()
        if opened:
            try:
                self.call.reattach_recordings(self)
            except Exception:  # noqa: BLE001 - the call may be going away; the stream goes on
                log.exception("call %s: recordings not moved behind stream %s", self.call.uuid, self.stream_id)
        return opened

    def _retry(self) -> bool:
        """maxRetries: reconnect with a new stream id (the old fork is already stopped)."""
        if self.retries_left <= 0 or self._stop_reason or self.call.session.gone:
            return False
        self.retries_left -= 1
        self._status.flush(self._post_status)   # what the old stream id still owes
        self.call.streams.pop(self.stream_id, None)
        self.stream_id = str(uuidlib.uuid4())
        if not self.options.control_id:
            self.control_id = self.stream_id
        self.call.streams[self.stream_id] = self
        self.call.timeline("stream_retry", {"stream_id": self.stream_id, "retries_left": self.retries_left})
        gevent.sleep(0.5)
        return True

    def wait(self) -> str | None:
        """Block until the stream ends (keepCallAlive, SWML connect); raises CallGone on hangup.
        A REST transfer interrupts it: the stream closes quietly (no StopStream, as on Vobiz).
        A stream that ended because the call went away (mod_audio_fork closes its socket as the
        channel hangs up, often before the hangup event) raises CallGone too: the caller ended
        the call, not the document (Caller / 4000, not 4010 End Of XML Instructions)."""
        if idle_audio.needed(self.call):    # FreeSWITCH writes nothing while the call idles: keep an app writing
            if not idle_audio.hold(self.call, self.ended.is_set) and self.call.interrupted.is_set():
                self.on_call_end("transfer")
                return self.end_reason
        else:
            while not self.ended.wait(0.2):
                if self.call.interrupted.is_set():
                    self.on_call_end("transfer")
                    return self.end_reason
                if self.call.session.gone:
                    break
        if self.call.session.gone or self.end_reason == "hangup":
            from esl_app import CallGone
            raise CallGone(self.call.session.hangup_cause, self.call.uuid)
        return self.end_reason

    def stop(self, reason: str = "api") -> None:
        """A stop callfork initiates: the app's `stop`, streamTimeout, REST DELETE, stop_stream."""
        if self.ended.is_set() or self._stop_reason:
            return
        self._stop_reason = reason
        if self.session is not None:
            self.session.stop(reason)
        else:
            self._end(reason)

    def on_call_end(self, reason: str = "hangup") -> None:
        """Hangup (or a transfer away from the document): close quietly (no StopStream)."""
        if self.ended.is_set():
            return
        self._stop_reason = self._stop_reason or reason
        if self.session is not None:
            self.session.stop(reason)
        self._end(reason)

    # -- events from the StreamSession (its greenlets) --------------------------------------------
    def _on_event(self, name: str, detail: dict) -> None:
        if name == "started":
            self._started_at = time.time()
            self.call.timeline("stream_started", {"stream_id": self.stream_id, "url": self.options.url})
            self._callback("StartStream", ServiceURL=self.options.url)
        elif name == "played":
            self._callback("PlayedStream", Name=detail.get("name", ""))
        elif name == "cleared":
            self._status.report(self._post_status, "ClearedAudio", "cleared", CLEARED_INTERVAL_S, {})
        elif name == "degraded":
            reason = detail.get("reason")
            fields = {"Error": f"connection degraded: {reason}" if reason else "connection degraded"}
            if "checkpoint" in detail:   # a checkpoint over the playout queue's cap: voided, named here
                fields["Name"] = detail["checkpoint"]
                fields["Error"] += f' ("{detail["checkpoint"]}")'
            self._status.report(self._post_status, "DegradedStream", reason or "", DEGRADED_INTERVAL_S, fields)
        elif name == "app_stop":
            self._stop_reason = self._stop_reason or "app_stop"
        elif name == "app_closed":
            self._dropped(detail, APP_CLOSED)
        elif name in ("app_failed", "module_failed"):
            self._dropped(detail, "connection failed: " + str(detail.get("error") or detail.get("reason") or name))
        elif name == "ended":
            gevent.spawn(self._after_session_end, detail.get("reason", ""))
        # module_disconnected is decided in _after_session_end: it is usually the call hanging up

    def _dropped(self, detail: dict, error: str) -> None:
        if not self._stop_reason and not self.call.session.gone:
            self.error = str(detail.get("error") or detail.get("reason") or error)
            self._callback("DroppedStream", Error=error)

    def _after_session_end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        if reason == "module_disconnected" and self._stop_reason is None:
            # mod_audio_fork closes its socket when the channel hangs up, often before the hangup
            # event reaches us: only a module that went away on a live call is a dropped stream
            if not self.call.session.wait_gone(1.0):
                self._dropped({"reason": "mod_audio_fork disconnected"},
                              "connection disconnected with the media server")
        stop = self._stop_reason
        if stop is None and not self.call.session.gone and self._retry():
            if self._reopen():
                return
            while self._retry():
                if self._reopen():
                    return
        self._end(stop or ("hangup" if self.call.session.gone else "dropped"))

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = reason
        if self._timer is not None:
            self._timer.kill(block=False)
        self._status.flush(self._post_status, close=True)
        if reason in SERVER_STOPS:
            self._callback("StopStream")
        failed = reason in ("failed", "dropped")
        self._record(status="failed" if failed else "completed", end_time=time.time(), error=self.error)
        self.call.timeline("stream_ended", {"stream_id": self.stream_id, "reason": reason})
        if self.options.on_status is not None:
            self.options.on_status(self, "Ended", {})
        elif self.options.dialect == "twilio" and self.options.status_url:
            self._swml_callback("finished")
        self.ended.set()

    # -- callbacks and records -------------------------------------------------------------------
    def _post_status(self, event: str, fields: dict) -> None:
        self._callback(event, **fields)

    def _callback(self, event: str, **fields) -> None:
        o = self.options
        if o.on_status is not None:
            o.on_status(self, event, fields)
            return
        if o.dialect == "twilio":
            if event == "StartStream":
                self._swml_callback("streaming")
            return
        if not o.status_url:
            return
        params = {
            "From": self.call.from_number, "To": self.call.to_number, "CallUUID": self.call.uuid,
            "Event": event, "StreamID": self.stream_id, "ParentAuthID": self.call.auth_id,
            "status_callback_url": o.status_url, "status_callback_method": o.status_method,
            "Timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "Error": "",
        }
        params.update(o.attributes)
        params.update({f"X-VH-{k}": v for k, v in o.extra_headers.items()})
        params.update(fields)
        self.call.post(o.status_url, o.status_method, params, event)

    def _swml_callback(self, state: str) -> None:
        o = self.options
        if not o.status_url:
            return
        body = {"event_type": "calling.call.stream", "event_channel": f"swml:{self.call.uuid}",
                "timestamp": time.time(), "project_id": self.call.auth_id, "space_id": self.call.auth_id,
                "params": {"call_id": self.call.uuid, "node_id": self.call.uuid,
                           "segment_id": self.call.uuid, "control_id": self.control_id,
                           "state": state, "url": o.url}}
        if o.name:
            body["params"]["name"] = o.name
        self.call.post(o.status_url, o.status_method, body, "calling.call.stream", encoding="json")

    def _record(self, **fields) -> None:
        o = self.options
        try:
            self.call.services.store.upsert_stream(
                self.stream_id, call_uuid=self.call.uuid, service_url=o.url, audio_track=o.track,
                bidirectional=int(o.bidirectional), content_type=o.content_type, sampling_rate=o.sample_rate,
                stream_timeout=o.stream_timeout, status_callback_url=o.status_url,
                status_callback_method=o.status_method, **fields)
        except Exception:
            log.exception("call %s: could not record stream %s", self.call.uuid, self.stream_id)


def _only_idle_writer_runs(session) -> bool:
    """killAudio sets CF_BREAK, which ends the app the channel runs: allowed while none runs but
    the `sleep` that keeps an idle call writing (verbs/idle_audio.py restarts it)."""
    return all(app == "sleep" for app in session.running_apps())


def _forward_dtmf(call, event) -> None:
    digit = event.get("DTMF-Digit")
    try:
        duration_ms = int(int(event.get("DTMF-Duration") or 0) / 8)
    except ValueError:
        duration_ms = None
    for stream in list(call.streams.values()):
        if stream.session is not None and not stream.ended.is_set():
            stream.session.send_dtmf(digit, duration_ms)


# what a stream does with mod_audio_fork's events (the relay itself sees closes and disconnects)
MODULE_EVENTS = ("mod_audio_fork::connect_failed", "mod_audio_fork::buffer_overrun")


def route_module_event(call, event) -> None:
    """A mod_audio_fork event to the stream it is for. A module that names its bug
    (`media-bugname`, as newer builds do) reaches that stream only. Without a name (the pinned
    jambonz and drachtio builds): a connect_failed goes to the stream that has waited longest for
    its module to connect (forks connect in the order they were started), so one failure fails one
    stream; a buffer_overrun to every stream whose fork is running (they all send to the relay)."""
    bugname = event.get("media-bugname") or event.get("Media-Bugname")
    live = [s for s in list(call.streams.values()) if s.session is not None and not s.ended.is_set()]
    if bugname:
        targets = [s for s in live if s.session.bugname == bugname]
    elif event.subclass == "mod_audio_fork::connect_failed":
        targets = [s for s in live if s.session.accepting_module][:1]
    else:
        targets = [s for s in live if s.session.forking]
    body = event.json() if hasattr(event, "json") else None
    for stream in targets:
        stream.session.on_module_event(event.subclass, body)


CONTENT_TYPES = {"audio/x-l16;rate=8000": ("l16", 8000), "audio/x-l16;rate=16000": ("l16", 16000),
                 "audio/x-mulaw;rate=8000": ("mulaw", 8000)}


def rest_stream_options(body: dict) -> StreamOptions:
    """Options for REST `POST /Call/{uuid}/Stream/` (https://docs.vobiz.ai/audio-streams/start-audio-stream). ValueError says
    what is wrong. `bidirectional` accepts the string "true" (what Vobiz requires) and a JSON true
    (which Vobiz silently treats as one-way; callfork does what the caller meant)."""
    url = str(body.get("service_url") or "").strip()
    if not url.lower().startswith(("ws://", "wss://")):
        raise ValueError("service_url must be a ws:// or wss:// URL")
    track = str(body.get("audio_track") or "inbound")
    if track not in ("inbound", "outbound", "both"):
        raise ValueError("audio_track must be inbound, outbound or both")
    content_type = str(body.get("content_type") or "audio/x-l16;rate=8000").replace(" ", "").lower()
    if content_type not in CONTENT_TYPES:
        raise ValueError("content_type must be one of " + ", ".join(CONTENT_TYPES))
    bidirectional = str(body.get("bidirectional", "false")).strip().lower() == "true"
    if bidirectional and track != "inbound":
        raise ValueError("a bidirectional stream carries only the inbound track")
    try:
        timeout = int(body.get("stream_timeout") or 86400)
    except ValueError:
        raise ValueError("stream_timeout must be an integer") from None
    if timeout <= 0:
        raise ValueError("stream_timeout must be positive")
    method = str(body.get("status_callback_method") or "POST").upper()
    if method not in ("GET", "POST"):
        raise ValueError("status_callback_method must be GET or POST")
    extra = {}
    for pair in filter(None, str(body.get("extra_headers") or "").split(",")):
        key, sep, value = pair.replace(":", "=", 1).partition("=")
        if not sep or not key.strip():
            raise ValueError("extra_headers must be key=value pairs separated by commas")
        extra[key.strip()] = value.strip()
    encoding, rate = CONTENT_TYPES[content_type]
    return StreamOptions(url=url, dialect="vobiz", track=track, encoding=encoding, sample_rate=rate,
                         bidirectional=bidirectional, status_url=body.get("status_callback_url") or None,
                         status_method=method, stream_timeout=timeout, extra_headers=extra,
                         content_type=content_type)
