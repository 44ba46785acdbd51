"""One live stream: the app's WebSocket on one end, mod_audio_fork's connection to the relay on the
other. This module wires the parts and owns the stream's life (start, the module's and the app's
messages, marks, stop); the parts are:
- app_connection.py: the WebSocket to the app (websockets' sans-I/O client);
- app_sender.py: what goes to the app, in order, without making the caller's audio wait;
- upstream.py: module frames -> the dialect's media messages;
- playback.py: the app's audio and marks on their way to the caller (downstream.py converts it,
  playout.py queues it, module_playout.py or file_playout.py plays it, one per build of
  mod_audio_fork, chosen once per bidirectional stream).

Greenlets per stream (each owns its side; they meet only through the bounded app send queue and
the playout queue):
- module reader (the relay's connection greenlet, `run_module`): module frames -> app. It waits
  without a timeout: it ends when the module closes, or when stop() closes the connection;
- app writer (`AppSender.run_writer`): the app send queue -> the app (a slow app only fills its
  own bounded queue: media is dropped and counted, `degraded` is emitted, other streams never wait);
- app reader: playAudio/checkpoint/clearAudio/stop (vobiz) or media/mark/clear/dtmf (twilio);
- the playout's greenlet (bidirectional streams only).

Start order: the app is connected first (so a refusal fails `start()` fast, before FreeSWITCH is
touched); then the session is registered with the relay and `uuid_audio_fork ... start` is issued.
The dialect's `start` message is sent when the module's WebSocket attaches, from the module reader
greenlet, just before the first media message: the app never sees `start` for a stream that never
carried audio, and `start` is always first on the wire. Twilio's `connected` carries no stream
data and is sent as soon as the app connection is up, as Twilio does.

An ended stream is in no reference cycle, so refcounting frees it at once (not the cyclic GC,
whose full collections pause the hub): stop() detaches the sender's and the playback's callbacks
and forgets the stream's greenlets (a killed one keeps a traceback holding the session).
tests/test_audio_fork_gc.py pins this.
"""
from __future__ import annotations

import logging
import secrets
from typing import Callable

import gevent
from gevent.event import Event

from .app_connection import AppConnectError, AppConnection, AppConnectionLost
from .app_sender import AppSender
from .command import fork_start, fork_stop, mix_for_track, parse_reply
from .dialects import (Checkpoint, ClearAudio, PlayAudio, SendDigits, StopStream, dialect_for)
from .errors import (ForkCommandError, NotSupportedByFlavour, ProtocolError, StreamStartError)
from .log_limit import LogLimiter
from .module_buffer import PLAYOUT_RATE
from .playback import Playback
from .spec import StreamSpec
from .upstream import Upstream

log = logging.getLogger("callfork.audio_fork.session")
_IGNORED_LOG = LogLimiter(burst=10, window_s=60.0)   # per stream: an app can send garbage at any rate

__all__ = ["StreamSpec", "StreamSession", "VERSION"]

VERSION = "0.1.0"


class StreamSession:
    """See the module docstring. Events via `on_event(name, detail)`: app_connected, started,
    played {name}, cleared {marks}, app_stop, app_closed {code}, app_failed {error},
    module_failed {reason}, module_disconnected, degraded {dropped|reason}, unsupported {error},
    ended {reason}."""

    def __init__(self, spec: StreamSpec, relay, api: Callable[[str], str],
                 on_event: Callable[[str, dict], None] | None = None,
                 may_kill_audio: Callable[[], bool] | None = None):
        spec.validate()
        # whether the module may be sent killAudio now (it sets CF_BREAK on the channel, which
        # ends whatever app the channel runs): the call knows, the stream does not
        self.may_kill_audio = may_kill_audio
        self.spec = spec
        self.relay = relay
        self.api = api
        self.on_event = on_event
        self.stream_id = spec.stream_id
        self.call_uuid = spec.call_uuid
        self.label = f"[{spec.call_uuid} {spec.stream_id}]"
        self.token = secrets.token_urlsafe(24)
        self.bugname = f"callfork_{spec.stream_id}"
        self.state = "new"
        self.end_reason: str | None = None
        self.dialect = dialect_for(spec)
        self.mix = mix_for_track(spec.track)
        self.fork_rate = spec.fork_rate
        self._upstream = Upstream(spec, self.dialect)
        self.playback = Playback(spec, self.dialect, relay, self.label, self._to_app, self._emit,
                                 self._spawn, self.call_api, may_kill_audio)
        self.playout = self.playback.playout
        self.app_connection: AppConnection | None = None
        self.module_connection = None
        self._sender: AppSender | None = None
        self._module_attached = Event()
        self._done = Event()
        self._greenlets: list = []
        self._writer_g = None
        self._reader_g = None
        self._stopping = False
        self._fork_started = False
        self._start_sent = False
        self._closing_app = False
        self._app_lost = False       # app_failed/app_closed reported (once per stream)
        self._unsupported_logged = False
        self.protocol_errors = 0     # app messages ignored (also summed in the relay's counters)

    # -- helpers ----------------------------------------------------------------------------------

    def _emit(self, name: str, detail: dict | None = None) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(name, detail or {})
        except Exception:  # noqa: BLE001 - a broken listener must not break the stream
            log.exception("%s on_event(%s) failed", self.label, name)

    def _app_lost_as(self, name: str, detail: dict, stopping_too: bool = False) -> None:
        """The app connection is gone (`app_failed`: a send failed; `app_closed`: its Close, or a
        broken read): reported once, then the stream stops. An app that closes while media is
        going out is often noticed twice, by a send (EPIPE) and by the reader (the Close), in
        either order: one lost connection is one event (one DroppedStream). `stopping_too`: the
        app's own Close is reported even while the stream is stopping (as it always was)."""
        if self._app_lost or (self._stopping and not stopping_too):
            return
        self._app_lost = True
        self._emit(name, detail)
        gevent.spawn(self.stop, name)

    def _send_failed(self, error: str) -> None:
        if not self._stopping and not self._app_lost:
            log.warning("%s send to app failed: %s", self.label, error)
        self._app_lost_as("app_failed", {"error": error})

    def _spawn(self, fn, *args):
        greenlets = self._greenlets
        if len(greenlets) >= 8:  # delayed acks come and go on a long stream: keep the live ones
            greenlets[:] = [g for g in greenlets if not g.dead]
        g = gevent.spawn(fn, *args)
        greenlets.append(g)
        return g

    def call_api(self, cmd: str) -> str:
        """One FreeSWITCH API command within the spec's api_timeout; its reply, or ForkCommandError."""
        with gevent.Timeout(self.spec.api_timeout, ForkCommandError(
                f"no reply within {self.spec.api_timeout}s", "", cmd)):
            reply = self.api(cmd)
        return parse_reply(reply, cmd)

    def _to_app(self, text: str, control: bool = False) -> None:
        sender = self._sender
        if sender is not None:
            sender.send(text, control)

    @property
    def accepting_module(self) -> bool:
        """The fork was started and its module has not connected yet."""
        return self.state in ("starting",) and self.module_connection is None

    @property
    def forking(self) -> bool:
        """The module is connected and the stream is not stopping."""
        return self.module_connection is not None and not self._stopping

    @property
    def app_dropped(self) -> int:
        return self._sender.dropped if self._sender is not None else 0

    # -- start ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the app, register with the relay, issue the fork command. Raises
        StreamStartError (after emitting app_failed/module_failed and ended) on failure."""
        if self.state != "new":
            raise StreamStartError(f"stream {self.stream_id} already started")
        spec = self.spec
        self.state = "connecting"
        headers = [h for h in spec.headers if not h.lower().startswith("user-agent:")]
        headers.append(f"User-Agent: callfork/{VERSION}")
        try:
            conn = AppConnection.connect(spec.url, headers, spec.connect_timeout, spec.app_sndbuf,
                                         resolve=spec.resolve)
        except AppConnectError as exc:
            log.warning("%s app %s refused: %s", self.label, spec.url, exc)
            self.state = "failed"
            self._emit("app_failed", {"error": str(exc)})
            self._finish("app_failed")
            raise StreamStartError(f"app connection failed: {exc}") from None
        self.app_connection = conn
        self._sender = AppSender(conn, spec.app_queue_messages, self.relay, self.label,
                                 spec.send_timeout, spec.keepalive_seconds,
                                 on_degraded=self._on_degraded, on_lost=self._send_failed)
        self._emit("app_connected")
        if spec.dialect == "twilio":
            self._sender.queue.put(self.dialect.connected(), control=True)
        self._writer_g = self._spawn(self._sender.run_writer)
        self._reader_g = self._spawn(self._app_reader)

        self.state = "starting"
        try:
            self.relay.register(self)
        except ValueError as exc:
            self._start_failed(str(exc), False)
        metadata = {"streamId": self.stream_id, "callUuid": self.call_uuid}
        bidi = PLAYOUT_RATE if (spec.bidirectional and spec.flavor == "jambonz") else None
        cmd = fork_start(self.call_uuid, self.relay.url_for(self.stream_id, self.token), self.mix,
                         self.fork_rate, self.bugname, metadata, bidirectional_rate=bidi)
        try:
            self.call_api(cmd)
        except ForkCommandError as exc:
            # no reply (a timeout): it may have started, so it is stopped
            self._start_failed(f"fork start failed: {exc}", not exc.reply, str(exc))
        except Exception as exc:  # noqa: BLE001 - the api callable's own errors (call gone, ...)
            self._start_failed(f"fork start failed: {exc!r}", True, repr(exc))
        self._fork_started = True
        self._spawn(self._module_watchdog)

    def _start_failed(self, log_text: str, may_have_started: bool, reason: str | None = None):
        log.error("%s %s", self.label, log_text)
        self._fork_started = may_have_started
        self.state = "failed"
        self._emit("module_failed", {"reason": reason or log_text})
        self.stop("module_failed")
        raise StreamStartError(reason or log_text)

    def _on_degraded(self, detail: dict) -> None:
        self._emit("degraded", detail)

    def _module_watchdog(self) -> None:
        if self._module_attached.wait(self.spec.connect_timeout) or self._stopping:
            return
        reason = f"mod_audio_fork did not connect within {self.spec.connect_timeout}s"
        log.error("%s %s", self.label, reason)
        self.state = "failed"
        self._emit("module_failed", {"reason": reason})
        self.stop("module_failed")

    # -- module side (runs in the relay's connection greenlet) ------------------------------------

    def run_module(self, conn) -> None:
        if self.module_connection is not None or self._stopping:
            conn.close(1008, "stream not expecting a connection")
            return
        self.module_connection = conn
        self.state = "streaming"
        sender = self._sender
        for text in self.dialect.opening():
            sender.queue.put(text, control=True)
        self._start_sent = True
        self._module_attached.set()
        self._emit("started")
        player = self.playback.attach(conn)
        if player is not None:
            self._spawn(player.run)
        self._upstream.pump(conn, sender, self.relay, self.label)
        if not self._stopping:
            log.info("%s module disconnected (code %s)", self.label, conn.close_code)
            self._emit("module_disconnected", {"code": conn.close_code})
            self.stop("module_disconnected")

    # -- app side ---------------------------------------------------------------------------------

    def _app_reader(self) -> None:
        conn = self.app_connection
        while True:
            try:
                msg = conn.receive()
            except AppConnectionLost as exc:
                if self._stopping or self._closing_app:
                    return
                if not self._app_lost:
                    log.warning("%s app connection lost: %s", self.label, exc)
                self._app_lost_as("app_closed", {"code": None, "error": str(exc)})
                return
            if msg is None:
                if self._closing_app:
                    return  # the reply to our own Close
                self._closing_app = True
                code = conn.close_code
                log.info("%s app closed the stream (code %s)", self.label, code)
                self._app_lost_as("app_closed", {"code": code}, stopping_too=True)
                return
            is_text, data = msg
            if not is_text:
                self._protocol_error(ProtocolError("binary message from the app (expected JSON text)"))
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._protocol_error(ProtocolError("text message is not UTF-8"))
                continue
            self._handle_app_text(text)

    def _ignored(self) -> None:
        """Count an app message that was not acted on (here and in the relay's totals)."""
        self.protocol_errors += 1
        self.relay.protocol_errors += 1

    def _protocol_error(self, exc: ProtocolError) -> None:
        self._ignored()
        _IGNORED_LOG.warning(log, "%s ignored app message: %s", self.label, exc, key=self.label)

    def _handle_app_text(self, text: str) -> None:
        try:
            msg = self.dialect.parse(text)
            if isinstance(msg, PlayAudio):
                self.playback.play(msg.audio, msg.encoding, msg.sample_rate)
            elif isinstance(msg, Checkpoint):
                self.playback.mark(msg.name)
            elif isinstance(msg, ClearAudio):
                names = self.playback.clear()
                text = self.dialect.cleared()
                if text:
                    self._to_app(text, control=True)
                self._emit("cleared", {"marks": names})
            elif isinstance(msg, StopStream):
                self._emit("app_stop")
                gevent.spawn(self.stop, "app_stop")
            elif isinstance(msg, SendDigits):
                self._send_digits(msg.digits)
        except ProtocolError as exc:
            self._protocol_error(exc)
        except NotSupportedByFlavour as exc:
            self._ignored()
            if not self._unsupported_logged:
                self._unsupported_logged = True
                log.error("%s %s", self.label, exc)
            self._emit("unsupported", {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - whatever an app sends, the reader goes on reading
            self._protocol_error(ProtocolError(f"message not handled: {exc!r}"))

    def _send_digits(self, digits: str) -> None:
        try:
            reply = self.api(f"uuid_send_dtmf {self.call_uuid} {digits}")
            if not (reply or "").strip().startswith("+OK"):
                log.warning("%s uuid_send_dtmf: %s", self.label, reply)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s uuid_send_dtmf failed: %r", self.label, exc)

    def send_dtmf(self, digit: str, duration_ms: int | None = None) -> None:
        """Tell the app about a DTMF digit the caller pressed (forward DTMF events here)."""
        if self._start_sent and not self._stopping:
            self._to_app(self.dialect.dtmf(digit, duration_ms), control=True)

    # -- module events (forwarded from ESL by the caller) -----------------------------------------

    def on_module_event(self, subclass: str, body: dict | None = None) -> None:
        name = subclass.split("::", 1)[-1]
        if name == "connect_failed":
            if self.module_connection is None and not self._stopping:
                reason = (body or {}).get("reason", "connect failed")
                log.error("%s mod_audio_fork connect_failed: %s", self.label, reason)
                self.state = "failed"
                self._emit("module_failed", {"reason": reason})
                gevent.spawn(self.stop, "module_failed")
        elif name == "buffer_overrun":
            self.relay.module_overruns += 1
            log.warning("%s mod_audio_fork buffer overrun: it drops the call's audio", self.label)
            self._emit("degraded", {"reason": "mod_audio_fork buffer overrun, audio to the app dropped"})
        else:
            log.debug("%s module event %s %s", self.label, subclass, body)

    # -- stop -------------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Stop the fork, tell the app (Twilio `stop`; Vobiz: none) and close it with 1000.
        Idempotent; safe to call from any greenlet."""
        if self._stopping:
            return
        self._stopping = True
        self.playback.stopping = True
        if self.state not in ("failed",):
            self.state = "stopping"
        me = gevent.getcurrent()
        if self._fork_started:
            try:
                self.call_api(fork_stop(self.call_uuid, self.bugname))
            except Exception as exc:  # noqa: BLE001 - call may be gone already; logged once
                log.info("%s fork stop: %s", self.label, exc)
        module = self.module_connection
        if module is not None:
            module.close(1000)
        sender = self._sender
        if sender is not None:
            if self._start_sent:
                text = self.dialect.closing()
                if text:
                    sender.queue.put(text, control=True)
            sender.close()
            # let the writer drain what is queued (bounded), then close the app socket
            writer = self._writer_g
            if writer is not None and writer is not me:
                writer.join(timeout=0.2 if sender.degraded else 2.0)  # a stalled app gets no grace
            sender.detach()
        self.playback.detach()
        self._close_app()
        greenlets, self._greenlets = self._greenlets, []
        for g in greenlets:
            if g is not me and not g.dead:
                g.kill(block=False)
        # a killed greenlet keeps its GreenletExit, whose traceback holds its frame and so this
        # session: the session must not hold the greenlet (a reference cycle), so it forgets them
        self._writer_g = self._reader_g = None
        self.relay.unregister(self.stream_id)
        self._finish(reason)

    def _close_app(self) -> None:
        conn = self.app_connection
        if conn is None:
            return
        if not self._closing_app:
            self._closing_app = True
            # bounded: a stalled app whose socket buffer is full would block this forever
            if conn.close(1000, timeout=1.0):
                # the reader sees the app's Close and returns; bounded wait
                reader = self._reader_g
                if reader is not None and reader is not gevent.getcurrent():
                    reader.join(timeout=1.0)
        conn.shutdown()

    def _finish(self, reason: str) -> None:
        if self._done.is_set():
            return
        if self.state != "failed":
            self.state = "ended"
        self.end_reason = reason
        log.info("%s stream ended: %s", self.label, reason)
        self._emit("ended", {"reason": reason})
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the stream has ended; True if it has."""
        return self._done.wait(timeout)

    @property
    def ended(self) -> bool:
        return self._done.is_set()
