"""One live stream: the app's WebSocket (client side, websocket-client) on one end, mod_audio_fork's
connection to the relay on the other, and the conversion between them.

Greenlets per stream (each owns its side; they meet only through the bounded app send queue and
the playout queue):
- module reader (the relay's connection greenlet): module frames -> 20 ms frames -> dialect ->
  app. When nothing is queued or in flight for the app (the usual case), it writes the frame to
  the app socket itself with a non-blocking send (plain TCP only; TLS apps always go through the
  writer); whatever the kernel does not take, and everything after it, goes to the app send queue.
  Several module messages from one recv (the relay is behind) go out in one write. App frames are
  built by appframes.py (mask keys from a pooled os.urandom block). The reader waits without a
  timeout: it ends when the module closes, or when stop() closes the connection;
- app writer: app send queue -> app WebSocket (a slow app only fills its own bounded queue:
  media is dropped and counted, `degraded` is emitted, other streams never wait);
- app reader: playAudio/checkpoint/clearAudio/stop (vobiz) or media/mark/clear/dtmf (twilio);
  websocket-client's frame reader over reads of whatever the socket holds (APP_READ_SIZE);
- pacer (jambonz + bidirectional only): playout queue -> one 8 kHz L16 frame to the module every
  20 ms on absolute deadlines; the end of an utterance is padded with silence until the module's
  prebuffer has flushed it, and checkpoints/marks are acked when the caller has heard their audio
  (`ModuleBuffer` models what the module holds);
- file pacer (drachtio + bidirectional): the module cannot play server audio, so utterances are
  written as WAV files and played with `uuid_broadcast` (clear: `uuid_break`).

Start order: the app is connected first (so a refusal fails `start()` fast, before FreeSWITCH is
touched); then the session is registered with the relay and `uuid_audio_fork ... start` is issued.
The dialect's `start` message is sent when the module's WebSocket attaches, from the module reader
greenlet, just before the first media message: the app never sees `start` for a stream that never
carried audio, and `start` is always first on the wire. Twilio's `connected` carries no stream
data and is sent as soon as the app connection is up, as Twilio does.

An ended stream is in no reference cycle, so refcounting frees it at once (not the cyclic GC,
whose full collections pause the hub): the playout queue's mark callback is a list's `append`,
not a method of the session; the app connection's frame reader reads the socket, not `ws._recv`;
stop() forgets the stream's greenlets (a killed one keeps a traceback holding the session).
tests/test_audio_fork_gc.py pins this.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import struct
import tempfile
import time
import wave
from typing import Callable

import gevent
import gevent.socket
import gevent.ssl
import websocket
from gevent.event import Event

from . import codecs
from .appframes import text_frame, text_frames
from .command import fork_start, fork_stop, mix_for_track, parse_reply
from .dialects import (Checkpoint, ClearAudio, PlayAudio, SendDigits, StopStream, make_dialect)
from .errors import (ForkCommandError, NotSupportedByFlavour, ProtocolError, StreamStartError)
from .framing import FrameAssembler, frame_bytes
from .app_queue import AppSendQueue
from .playout import PlayoutQueue
from .spec import StreamSpec

log = logging.getLogger("callfork.audio_fork.session")

__all__ = ["StreamSpec", "StreamSession", "VERSION"]

VERSION = "0.1.0"
PLAYOUT_RATE = 8000          # what the pacer sends to the module (`true true 8000`)
PLAYOUT_FRAME = 320          # 20 ms of L16 8 kHz mono
TAIL_GRACE_FRAMES = 2        # an empty queue this long ends an utterance: flush its tail
APP_READ_SIZE = 8192         # one read from the app socket (the frame reader copies what it keeps)


class ModuleBuffer:
    """What mod_audio_fork (jambonz, `true true 8000`) holds of the audio we sent, modelled on its
    source (lws_glue.cpp processIncomingBinary / dub_speech_frame; the simulator does the same):
    incoming samples collect in a prebuffer that moves to the playout buffer only once it holds
    `threshold` samples (1280 the first time, then 640), and the playout buffer drains 160 samples
    per 20 ms. So the last <80 ms of an utterance would wait in the prebuffer for the next one, and
    the caller hears a frame ~160 ms after we send it. The pacer uses this to pad an utterance's end
    with silence until it is flushed, and to ack a checkpoint/mark only once its audio was heard."""

    def __init__(self, rate: int = PLAYOUT_RATE):
        df = max(1, rate // 8000)
        self.threshold = 320 * df * 4
        self.next_threshold = 320 * df * 2
        self.pending = 0               # samples in the module's prebuffer
        self.pending_audio = 0         # ... up to the end of the last one that was not padding
        self.heard_end = 0.0           # monotonic time when everything flushed so far has played
        self.audio_end = 0.0           # ... and when the last non-padding sample has played

    def playing(self, now: float) -> bool:
        """The caller is still hearing audio the module took from us."""
        return self.heard_end > now

    def killed(self, now: float) -> None:
        """killAudio emptied the module's playout (its prebuffer was flushed into it first)."""
        self.pending = self.pending_audio = 0
        self.heard_end = self.audio_end = now

    def push(self, samples: int, now: float, padding: bool = False) -> bool:
        """`samples` sent at `now` (`padding`: silence we added); True when that flushed the
        prebuffer into playout."""
        self.pending += samples
        if not padding:
            self.pending_audio = self.pending
        if self.pending < self.threshold:
            return False
        start = max(self.heard_end, now)
        if self.pending_audio:
            self.audio_end = start + self.pending_audio / PLAYOUT_RATE
        self.heard_end = start + self.pending / PLAYOUT_RATE
        self.pending = self.pending_audio = 0
        self.threshold = self.next_threshold
        return True


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
        self.token = secrets.token_urlsafe(24)
        self.bugname = f"callfork_{spec.stream_id}"
        self.state = "new"
        self.end_reason: str | None = None
        if spec.dialect == "vobiz":
            self.dialect = make_dialect("vobiz", stream_id=spec.stream_id, call_id=spec.call_uuid,
                                        account_id=spec.account_id, track=spec.track,
                                        encoding=spec.encoding, sample_rate=spec.sample_rate,
                                        extra_headers=spec.extra_headers,
                                        extra_headers_mode=spec.extra_headers_mode)
        else:
            self.dialect = make_dialect("twilio", stream_id=spec.stream_id, call_id=spec.call_uuid,
                                        account_id=spec.account_id, track=spec.track,
                                        encoding=spec.encoding, sample_rate=spec.sample_rate,
                                        custom_parameters=spec.custom_parameters)
        self.mix = mix_for_track(spec.track)
        self.fork_rate = spec.fork_rate
        channels = 2 if self.mix == "stereo" else 1
        self._assembler = FrameAssembler(frame_bytes(self.fork_rate, channels))
        self._tracks = ["inbound", "outbound"] if spec.track == "both" else [spec.track]
        # per-track upstream converters (only L16 24k needs a resampler + re-framing)
        self._up_resample = {}
        self._up_frames = {t: 0 for t in ("inbound", "outbound")}
        if spec.encoding == "l16" and spec.sample_rate != self.fork_rate:
            for t in self._tracks:
                self._up_resample[t] = (codecs.Resampler(self.fork_rate, spec.sample_rate),
                                        FrameAssembler(frame_bytes(spec.sample_rate)))
        # one track of L16 as the module sends it (no split, codec, resampler or byte swap): each
        # 20 ms frame is the payload as is (_on_plain_frame, the usual case)
        self._plain = (self.mix == "mono" and spec.encoding == "l16" and not self._up_resample
                       and spec.l16_byte_order != "be")
        self._down_resample: dict = {}
        # marks whose audio went to the module, acked by _ack_marks() once the module has played
        # it. Filled by the playout queue inside pull()/add_mark() and emptied in place (never
        # rebound): its `append` is the queue's callback, which holds the list and not the session
        # (a bound method of the session would put the session in a reference cycle)
        self._marks_due: list = []
        self.playout = PlayoutQueue(PLAYOUT_FRAME, on_mark=self._marks_due.append,
                                    max_seconds=spec.max_playout_seconds)
        self._app_queue = AppSendQueue(spec.app_queue_messages)
        self._app_ws = None
        self._module = None
        self._module_attached = Event()
        self._audio_ready = Event()
        self._done = Event()
        self._greenlets: list = []
        self._writer_g = None
        self._reader_g = None
        self._app_sock = None        # the app's plain TCP socket when frames may be written inline
        self._writer_busy = False    # the writer holds a batch it has not finished sending
        self._last_app_send = 0.0
        self._held: list | None = None  # media held while the module greenlet works through one recv
        self._stopping = False
        self._fork_started = False
        self._start_sent = False
        self._degraded = False
        self._closing_app = False
        self._app_lost = False       # app_failed/app_closed reported (once per stream)
        self._unsupported_logged = False
        self._module_buffer = ModuleBuffer()
        # counters
        self.protocol_errors = 0     # app messages ignored (also summed in the relay's counters)

    # -- helpers ----------------------------------------------------------------------------------

    def _emit(self, name: str, detail: dict | None = None) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(name, detail or {})
        except Exception:  # noqa: BLE001 - a broken listener must not break the stream
            log.exception("[%s %s] on_event(%s) failed", self.call_uuid, self.stream_id, name)

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

    def _spawn(self, fn, *args):
        greenlets = self._greenlets
        if len(greenlets) >= 8:  # delayed acks come and go on a long stream: keep the live ones
            greenlets[:] = [g for g in greenlets if not g.dead]
        g = gevent.spawn(fn, *args)
        greenlets.append(g)
        return g

    def _call_api(self, cmd: str) -> str:
        with gevent.Timeout(self.spec.api_timeout, ForkCommandError(
                f"no reply within {self.spec.api_timeout}s", "", cmd)):
            reply = self.api(cmd)
        return parse_reply(reply, cmd)

    @property
    def accepting_module(self) -> bool:
        """The fork was started and its module has not connected yet."""
        return self.state in ("starting",) and self._module is None

    @property
    def forking(self) -> bool:
        """The module is connected and the stream is not stopping."""
        return self._module is not None and not self._stopping

    @property
    def app_dropped(self) -> int:
        return self._app_queue.dropped

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
            sockopt = ((socket.SOL_SOCKET, socket.SO_SNDBUF, spec.app_sndbuf),) if spec.app_sndbuf else ()
            # skip_utf8_validation: websocket-client checks UTF-8 in pure Python (73% of the relay's
            # CPU with bidirectional streams, BENCHMARKS.md); _app_reader decodes strictly in C anyway
            ws = websocket.create_connection(spec.url, timeout=spec.connect_timeout, header=headers,
                                             enable_multithread=True, sockopt=sockopt,
                                             skip_utf8_validation=True)
        except Exception as exc:  # noqa: BLE001 - every way of failing to connect is one outcome
            error = _describe_connect_error(exc)
            log.warning("[%s %s] app %s refused: %s", self.call_uuid, self.stream_id, spec.url, error)
            self.state = "failed"
            self._emit("app_failed", {"error": error})
            self._finish("app_failed")
            raise StreamStartError(f"app connection failed: {error}") from None
        ws.settimeout(None)
        _own_frame_reader(ws)
        self._app_ws = ws
        sock = ws.sock
        # inline writes need a non-blocking send (gevent's timeout=0.0); TLS sockets ignore it
        if isinstance(sock, gevent.socket.socket) and not isinstance(sock, gevent.ssl.SSLSocket):
            self._app_sock = sock
        self._last_app_send = time.monotonic()
        self._emit("app_connected")
        if spec.dialect == "twilio":
            self._app_queue.put(self.dialect.connected(), control=True)
        self._writer_g = self._spawn(self._app_writer)
        self._reader_g = self._spawn(self._app_reader)

        self.state = "starting"
        try:
            self.relay.register(self)
        except ValueError as exc:
            log.error("[%s %s] %s", self.call_uuid, self.stream_id, exc)
            self.state = "failed"
            self._emit("module_failed", {"reason": str(exc)})
            self.stop("module_failed")
            raise StreamStartError(str(exc)) from None
        metadata = {"streamId": self.stream_id, "callUuid": self.call_uuid}
        bidi = PLAYOUT_RATE if (spec.bidirectional and spec.flavor == "jambonz") else None
        cmd = fork_start(self.call_uuid, self.relay.url_for(self.stream_id, self.token), self.mix,
                         self.fork_rate, self.bugname, metadata, bidirectional_rate=bidi)
        try:
            self._call_api(cmd)
        except ForkCommandError as exc:
            log.error("[%s %s] fork start failed: %s", self.call_uuid, self.stream_id, exc)
            if not exc.reply:
                self._fork_started = True  # no reply (timeout): it may have started; stop it
            self.state = "failed"
            self._emit("module_failed", {"reason": str(exc)})
            self.stop("module_failed")
            raise StreamStartError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the api callable's own errors (call gone, ...)
            log.error("[%s %s] fork start failed: %r", self.call_uuid, self.stream_id, exc)
            self._fork_started = True  # outcome unknown (e.g. timeout): stop the bug to be safe
            self.state = "failed"
            self._emit("module_failed", {"reason": repr(exc)})
            self.stop("module_failed")
            raise StreamStartError(repr(exc)) from None
        self._fork_started = True
        self._spawn(self._module_watchdog)

    def _module_watchdog(self) -> None:
        if self._module_attached.wait(self.spec.connect_timeout):
            return
        if self._stopping:
            return
        reason = f"mod_audio_fork did not connect within {self.spec.connect_timeout}s"
        log.error("[%s %s] %s", self.call_uuid, self.stream_id, reason)
        self.state = "failed"
        self._emit("module_failed", {"reason": reason})
        self.stop("module_failed")

    # -- module side (runs in the relay's connection greenlet) ------------------------------------

    def run_module(self, conn) -> None:
        if self._module is not None or self._stopping:
            conn.close(1008, "stream not expecting a connection")
            return
        self._module = conn
        self.state = "streaming"
        for text in self.dialect.opening():
            self._app_queue.put(text, control=True)
        self._start_sent = True
        self._module_attached.set()
        self._emit("started")
        if self.spec.bidirectional and self.spec.flavor == "jambonz":
            self._spawn(self._pacer)
        elif self.spec.bidirectional:
            self._spawn(self._file_pacer)
        first_text = True
        relay = self.relay
        receive = conn.receive_batch
        feed = self._assembler.feed
        on_frame = self._on_plain_frame if self._plain else self._on_module_frame
        while True:
            # no receive timeout (it would cost a timer per read): the loop ends when the module
            # closes, or when stop()/the relay closes it (a module that does not answer the Close
            # is dropped after the connection's close_timeout)
            msgs = receive(None)
            if msgs is None:
                break
            if len(msgs) > 1:
                # one recv brought several messages (the relay is behind): what they produce goes
                # to the app in one write once they are all handled, not one write each
                self._held = []
            for msg in msgs:
                if msg.__class__ is str:
                    if first_text:
                        first_text = False
                        log.debug("[%s %s] module metadata: %s", self.call_uuid, self.stream_id, msg[:200])
                    else:
                        log.debug("[%s %s] module text: %s", self.call_uuid, self.stream_id, msg[:200])
                    continue
                if not msg:
                    continue  # graceful-shutdown marker
                frames = feed(msg)
                n = len(frames)
                relay.frames_in += n
                for frame in frames:
                    try:
                        on_frame(frame)
                    except Exception:  # noqa: BLE001 - garbage must not kill the stream
                        log.exception("[%s %s] bad module frame", self.call_uuid, self.stream_id)
            if self._held is not None:
                self._flush_held()
        if not self._stopping:
            log.info("[%s %s] module disconnected (code %s)", self.call_uuid, self.stream_id, conn.close_code)
            self._emit("module_disconnected", {"code": conn.close_code})
            self.stop("module_disconnected")

    def _on_plain_frame(self, frame: bytes) -> None:
        track = self._tracks[0]
        n = self._up_frames[track]
        self._up_frames[track] = n + 1
        self._to_app(self.dialect.media(track, frame, n * 20))

    def _on_module_frame(self, frame: bytes) -> None:
        if self.mix == "mono":
            parts = ((self._tracks[0], frame),)
        elif self.spec.track == "both":
            left, right = codecs.stereo_split(frame)
            parts = (("inbound", left), ("outbound", right))
        else:
            parts = (("outbound", codecs.stereo_right(frame)),)
        encoding = self.spec.encoding
        be = self.spec.l16_byte_order == "be"
        for track, pcm in parts:
            if encoding == "mulaw":
                payloads = (codecs.ulaw_encode(pcm),)
            elif track in self._up_resample:
                resampler, assembler = self._up_resample[track]
                payloads = assembler.feed(resampler.process(pcm))
            else:
                payloads = (pcm,)
            for payload in payloads:
                if be:
                    payload = codecs.byteswap16(payload)
                ms = self._up_frames[track] * 20
                self._up_frames[track] += 1
                self._to_app(self.dialect.media(track, payload, ms))

    # -- app side ---------------------------------------------------------------------------------

    def _to_app(self, text: str, control: bool = False) -> None:
        if self._held is not None:
            self._held.append((text, control))
            return
        queue = self._app_queue
        if self._app_sock is not None and not queue.items and not self._writer_busy and not queue.closed:
            # nothing queued or in flight: write it now, from this greenlet, if the socket takes it
            # without blocking (saves the hand-off to the writer: an Event and two switches per frame)
            if self._send_inline(text):
                self._degraded = False
                return
        if queue.put(text, control):
            if self._degraded and len(queue) < queue.limit // 2:
                self._degraded = False
            return
        if queue.closed:
            return
        self.relay.app_dropped += 1
        if not self._degraded:
            self._degraded = True
            log.warning("[%s %s] app is not keeping up: send queue full, dropping media",
                        self.call_uuid, self.stream_id)
            self._emit("degraded", {"dropped": queue.dropped})

    def _flush_held(self) -> None:
        held, self._held = self._held, None
        if not held:
            return
        queue = self._app_queue
        if (len(held) > 1 and self._app_sock is not None and not queue.items and not self._writer_busy
                and not queue.closed and self._send_inline([t for t, _ in held])):
            self._degraded = False
            return
        for text, control in held:
            self._to_app(text, control)

    def _send_inline(self, text) -> bool:
        """One frame straight to the app socket, never blocking: what the kernel does not take now
        goes to the writer greenlet (which then owns the order). False: use the send queue instead."""
        # websocket-client's send lock (its pings, pongs and close; the writer) held means another
        # greenlet is part-way through a frame: then queue. It is checked, not taken: nothing below
        # switches greenlets (the send never waits), so no other sender can start meanwhile, and
        # taking + releasing gevent's lock would cost 0.7 us per frame against 0.1 for the check.
        if self._app_ws.lock.locked():
            return False
        # one text, or a list of texts in one write
        data = text_frame(text) if text.__class__ is str else text_frames(text)
        try:
            sent = self._app_sock.send(data, 0, timeout=0.0)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._app_sock = None
            if not self._stopping and not self._app_lost:
                log.warning("[%s %s] send to app failed: %r", self.call_uuid, self.stream_id, exc)
            self._app_lost_as("app_failed", {"error": repr(exc)})
            return True
        if sent < len(data):
            self._app_queue.put_raw(data[sent:])
        self._last_app_send = time.monotonic()
        return True

    def _app_writer(self) -> None:
        ws = self._app_ws
        keepalive = self.spec.keepalive_seconds
        queue = self._app_queue
        while True:
            self._writer_busy = False
            try:
                text = queue.get(timeout=min(5.0, keepalive))
            except EOFError:
                return
            if text is None:
                if time.monotonic() - self._last_app_send >= keepalive:
                    # an idle stream (paused fork, one-way app) must not be cut by proxies
                    try:
                        with gevent.Timeout(self.spec.send_timeout, TimeoutError("ping timeout")):
                            ws.ping()
                    except Exception as exc:  # noqa: BLE001
                        log.info("[%s %s] keepalive ping failed: %r", self.call_uuid, self.stream_id, exc)
                    self._last_app_send = time.monotonic()
                continue
            self._writer_busy = True  # until this batch is out, inline writes would overtake it
            batch = [text] + queue.drain(63)
            try:
                # everything queued goes out in one sendall (under websocket-client's send lock):
                # one syscall and one timeout per batch, not per message
                data = b"".join([t if t.__class__ is bytes else text_frame(t) for t in batch])
                with gevent.Timeout(self.spec.send_timeout, TimeoutError("send timeout")):
                    with ws.lock:
                        ws.sock.sendall(data)
                self._last_app_send = time.monotonic()
            except Exception as exc:  # noqa: BLE001
                if self._stopping:
                    return
                if not self._app_lost:
                    log.warning("[%s %s] send to app failed: %r", self.call_uuid, self.stream_id, exc)
                self._app_lost_as("app_failed", {"error": repr(exc)})
                return

    def _app_reader(self) -> None:
        ws = self._app_ws
        frames = ws.frame_buffer  # _own_frame_reader's; nothing else reads this socket
        while True:
            try:
                frame = frames.recv_frame()
            except Exception as exc:  # noqa: BLE001
                if self._stopping or self._closing_app:
                    return
                if not self._app_lost:
                    log.warning("[%s %s] app connection lost: %r", self.call_uuid, self.stream_id, exc)
                self._app_lost_as("app_closed", {"code": None, "error": repr(exc)})
                return
            op = frame.opcode
            if op in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_CONT):
                try:
                    ws.cont_frame.validate(frame)
                    ws.cont_frame.add(frame)
                    if not ws.cont_frame.is_fire(frame):
                        continue
                    opcode, whole = ws.cont_frame.extract(frame)
                    data = whole.data
                except Exception as exc:  # noqa: BLE001 - bad fragmentation / bad UTF-8
                    self._protocol_error(ProtocolError(f"bad frame from the app: {exc}"))
                    continue
                if opcode == websocket.ABNF.OPCODE_BINARY:
                    self._protocol_error(ProtocolError("binary message from the app (expected JSON text)"))
                    continue
                try:
                    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
                except UnicodeDecodeError:
                    self._protocol_error(ProtocolError("text message is not UTF-8"))
                    continue
                self._handle_app_text(text)
            elif op == websocket.ABNF.OPCODE_PING:
                try:
                    ws.pong(frame.data)
                except Exception:  # noqa: BLE001
                    pass
            elif op == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else None
                if self._closing_app:
                    return  # the reply to our own Close
                try:
                    ws.send_close(code if code and code not in (1005, 1006) else 1000)
                except Exception:  # noqa: BLE001
                    pass
                self._closing_app = True
                log.info("[%s %s] app closed the stream (code %s)", self.call_uuid, self.stream_id, code)
                self._app_lost_as("app_closed", {"code": code}, stopping_too=True)
                return

    def _ignored(self) -> None:
        """Count an app message that was not acted on (here and in the relay's totals)."""
        self.protocol_errors += 1
        self.relay.protocol_errors += 1

    def _protocol_error(self, exc: ProtocolError) -> None:
        self._ignored()
        log.warning("[%s %s] ignored app message: %s", self.call_uuid, self.stream_id, exc)

    def _handle_app_text(self, text: str) -> None:
        try:
            msg = self.dialect.parse(text)
            if isinstance(msg, PlayAudio):
                self._play(msg)
            elif isinstance(msg, Checkpoint):
                self._flush_resamplers()  # the audio before the mark must play in full
                self.playout.add_mark(msg.name)
                self._ack_marks()
            elif isinstance(msg, ClearAudio):
                self._clear()
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
                log.error("[%s %s] %s", self.call_uuid, self.stream_id, exc)
            self._emit("unsupported", {"error": str(exc)})

    def _play(self, msg: PlayAudio) -> None:
        if not self.spec.bidirectional:
            raise ProtocolError("audio from the app on a one-way stream (bidirectional is off)")
        audio = msg.audio
        if msg.encoding == "mulaw":
            pcm = codecs.ulaw_decode(audio)
        elif self.spec.l16_byte_order == "be":
            pcm = codecs.byteswap16(audio)
        else:
            pcm = audio
        if msg.sample_rate != PLAYOUT_RATE:
            rs = self._down_resample.get(msg.sample_rate)
            if rs is None:
                rs = self._down_resample[msg.sample_rate] = codecs.Resampler(msg.sample_rate, PLAYOUT_RATE)
            pcm = rs.process(pcm)
        accepted = self.playout.append(pcm)
        if accepted < len(pcm):
            self.relay.playout_dropped_bytes += len(pcm) - accepted
            self._emit("degraded", {"reason": "playout queue full", "dropped_bytes": self.playout.dropped_bytes})
        self._audio_ready.set()

    def _flush_resamplers(self) -> None:
        for rs in self._down_resample.values():
            tail = rs.flush()
            if tail:
                self.playout.append(tail)
        self._down_resample.clear()
        self._audio_ready.set()

    def _ack_marks(self) -> None:
        """Ack the due marks once the caller has heard their audio: at once when the module has
        nothing of ours waiting, else when its buffer has played out (the tail of an utterance
        still in its prebuffer is flushed by the pacer's padding, which calls this again)."""
        if not self._marks_due or self._module_buffer.pending:
            return
        names = self._marks_due[:]
        self._marks_due.clear()
        delay = self._module_buffer.audio_end - time.monotonic()
        if delay <= 0.005:
            self._send_acks(names)
        else:
            self._spawn(self._send_acks_later, delay, names)

    def _send_acks_later(self, delay: float, names: list) -> None:
        gevent.sleep(delay)
        self._send_acks(names)

    def _send_acks(self, names: list) -> None:
        if self._stopping:
            return
        for name in names:
            self._to_app(self.dialect.played(name), control=True)
            self._emit("played", {"name": name})

    def _clear(self) -> None:
        names = self.playout.clear()
        self._ack_marks()  # marks already played (pulled) before the clear are still acked
        self._down_resample.clear()
        for name in names:
            text = self.dialect.mark_cleared(name)
            if text:
                self._to_app(text, control=True)
        if self.spec.bidirectional and self.spec.flavor == "jambonz":
            self._kill_module_audio()
        if self.spec.bidirectional and self.spec.flavor != "jambonz":
            # the file fallback: stop the file playing now (and, unavoidably, whatever else plays)
            self._module_buffer.audio_end = self._module_buffer.heard_end = time.monotonic()
            try:
                self._call_api(f"uuid_break {self.call_uuid} all")
            except Exception as exc:  # noqa: BLE001
                log.info("[%s %s] uuid_break: %s", self.call_uuid, self.stream_id, exc)
        text = self.dialect.cleared()
        if text:
            self._to_app(text, control=True)
        self._emit("cleared", {"marks": names})

    def _kill_module_audio(self) -> None:
        """Barge-in: empty what mod_audio_fork holds of ours, not only our queue. Its killAudio
        empties the playout buffer at the next written frame, but not its prebuffer, whose rest
        would start the next utterance: so the prebuffer is first filled to its threshold with
        silence (which moves it into the playout), then killed. killAudio also sets CF_BREAK on the
        channel, which ends the app running there: only when the call says nothing but our own
        writer runs (`may_kill_audio`). Otherwise what the module holds plays out (up to ~160 ms)."""
        module = self._module
        if module is None or self.may_kill_audio is None:
            return
        try:
            allowed = self.may_kill_audio()
        except Exception:  # noqa: BLE001 - the call may be going away: no kill then
            allowed = False
        if not allowed:
            return
        buffered = self._module_buffer
        try:
            if buffered.pending:
                module.send_bytes(b"\x00" * ((buffered.threshold - buffered.pending) * 2))
            module.send_text('{"type":"killAudio"}')
        except Exception as exc:  # noqa: BLE001 - the module went away: nothing left to clear
            log.info("[%s %s] killAudio: %r", self.call_uuid, self.stream_id, exc)
            return
        buffered.killed(time.monotonic())

    def _send_digits(self, digits: str) -> None:
        try:
            reply = self.api(f"uuid_send_dtmf {self.call_uuid} {digits}")
            if not (reply or "").strip().startswith("+OK"):
                log.warning("[%s %s] uuid_send_dtmf: %s", self.call_uuid, self.stream_id, reply)
        except Exception as exc:  # noqa: BLE001
            log.warning("[%s %s] uuid_send_dtmf failed: %r", self.call_uuid, self.stream_id, exc)

    def send_dtmf(self, digit: str, duration_ms: int | None = None) -> None:
        """Tell the app about a DTMF digit the caller pressed (forward DTMF events here)."""
        if self._start_sent and not self._stopping:
            self._to_app(self.dialect.dtmf(digit, duration_ms), control=True)

    # -- playout pacer ----------------------------------------------------------------------------

    def _pacer(self) -> None:
        """Frames to the module: at once while the caller hears nothing of ours (mod_audio_fork
        plays nothing until its prebuffer holds 160 ms, then 80 ms: so an utterance starts as soon
        as the module can play it), then one per 20 ms on absolute deadlines. `paced_until` is
        when what was sent would have finished at real-time pace: when the queue runs dry with
        audio still short of a frame here or in the module's prebuffer, the pacer waits until
        TAIL_GRACE_FRAMES past it (the app may just be sending in real time), then sends the partial
        frame and silence until the module has flushed it (ModuleBuffer), so an utterance's end is
        heard now and not with the next one."""
        period = 0.020
        grace = TAIL_GRACE_FRAMES * period
        deadline = None
        paced_until = None
        playout = self.playout
        module_buffer = self._module_buffer
        silence = b"\x00" * PLAYOUT_FRAME
        while not self._stopping:
            padding = None
            silent = False
            now = time.monotonic()
            if not playout.has_frame():
                if not (playout.queued_bytes or module_buffer.pending):
                    deadline = paced_until = None
                    self._audio_ready.clear()
                    self._audio_ready.wait(0.1)
                    continue
                late = (paced_until or now) + grace
                if now < late:
                    deadline = None
                    self._audio_ready.clear()
                    self._audio_ready.wait(min(period, late - now))
                    continue
                padding = playout.pull(partial=True)
                if padding is None:
                    padding, silent = silence, True
            if deadline is None or not module_buffer.playing(now):
                deadline = now  # the caller hears nothing of ours: fill the module's prebuffer at once
            elif deadline > now:
                gevent.sleep(deadline - now)
            frame = padding if padding is not None else playout.pull()
            if frame is None or self._module is None:
                continue
            try:
                self._module.send_bytes(frame)
            except Exception as exc:  # noqa: BLE001
                log.warning("[%s %s] playout to module failed: %r", self.call_uuid, self.stream_id, exc)
                return
            self.relay.frames_out += 1
            now = time.monotonic()
            module_buffer.push(len(frame) // 2, now, padding=silent)
            if not silent:
                paced_until = max(paced_until or now, now) + period
            self._ack_marks()
            deadline += period
            if now - deadline > 0.2:  # fell far behind (hub stalled): resync, no burst
                deadline = now

    # -- drachtio fallback: app audio as files played on the channel --------------------------------

    def _file_pacer(self) -> None:
        """drachtio's mod_audio_fork discards audio from the server, so app audio is gathered into
        utterances (until the app pauses 60 ms, a checkpoint/mark, or 1 s of audio), written as
        8 kHz WAV files and played on the channel with `uuid_broadcast`, one after the other and
        at most ~100 ms ahead of real time (so clearAudio stays responsive). Marks are acked when
        the file holding their audio has played, by the clock (no ESL events reach the relay).
        clearAudio drops the queue and breaks the channel's playback (`uuid_break`), which also
        stops anything else the channel plays at that moment."""
        playout = self.playout
        clock = self._module_buffer
        limit = PLAYOUT_RATE * 2                     # 1 s of L16
        while not self._stopping:
            if not playout.queued_bytes:
                self._audio_ready.clear()
                if not playout.queued_bytes:
                    self._audio_ready.wait(0.1)
                continue
            gather_until = time.monotonic() + 0.06
            while (playout.queued_bytes < limit and not playout.has_mark_after_audio()
                   and time.monotonic() < gather_until and not self._stopping):
                self._audio_ready.clear()
                self._audio_ready.wait(max(0.0, gather_until - time.monotonic()))
            chunks, size = [], 0
            while size < limit and not self._marks_due:
                frame = playout.pull(partial=True)
                if frame is None:
                    break
                chunks.append(frame)
                size += len(frame)
            if not chunks or self._stopping:
                self._ack_marks()
                continue
            audio = b"".join(chunks)
            path = self._write_wav(audio)
            try:
                reply = self._call_api(f"uuid_broadcast {self.call_uuid} {path} aleg")
            except Exception as exc:  # noqa: BLE001 - the call may be gone
                log.warning("[%s %s] uuid_broadcast failed: %s", self.call_uuid, self.stream_id, exc)
                _unlink(path)
                # the audio did not play: its marks are void (Vobiz) / returned (Twilio), as on a clear
                names = self._marks_due[:]
                self._marks_due.clear()
                for name in names:
                    text = self.dialect.mark_cleared(name)
                    if text:
                        self._to_app(text, control=True)
                continue
            now = time.monotonic()
            clock.audio_end = clock.heard_end = max(clock.heard_end, now) + len(audio) / 2 / PLAYOUT_RATE
            self.relay.frames_out += len(chunks)
            gevent.spawn_later(clock.heard_end - now + 5.0, _unlink, path)
            self._ack_marks()
            log.debug("[%s %s] playing %s (%s)", self.call_uuid, self.stream_id, path, reply)
            ahead = clock.heard_end - time.monotonic() - 0.1
            if ahead > 0:
                gevent.sleep(ahead)

    def _write_wav(self, pcm: bytes) -> str:
        directory = self.spec.media_dir or tempfile.gettempdir()
        fd, path = tempfile.mkstemp(prefix=f"callfork_{self.stream_id}_", suffix=".wav", dir=directory)
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(PLAYOUT_RATE)
            wav.writeframes(pcm)
        return path

    # -- module events (forwarded from ESL by the caller) -----------------------------------------

    def on_module_event(self, subclass: str, body: dict | None = None) -> None:
        name = subclass.split("::", 1)[-1]
        if name == "connect_failed":
            if self._module is None and not self._stopping:
                reason = (body or {}).get("reason", "connect failed")
                log.error("[%s %s] mod_audio_fork connect_failed: %s", self.call_uuid, self.stream_id, reason)
                self.state = "failed"
                self._emit("module_failed", {"reason": reason})
                gevent.spawn(self.stop, "module_failed")
        elif name == "buffer_overrun":
            self.relay.module_overruns += 1
            log.warning("[%s %s] mod_audio_fork buffer overrun: it drops the call's audio", self.call_uuid,
                        self.stream_id)
            self._emit("degraded", {"reason": "mod_audio_fork buffer overrun, audio to the app dropped"})
        else:
            log.debug("[%s %s] module event %s %s", self.call_uuid, self.stream_id, subclass, body)

    # -- stop -------------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Stop the fork, tell the app (Twilio `stop`; Vobiz: none) and close it with 1000.
        Idempotent; safe to call from any greenlet."""
        if self._stopping:
            return
        self._stopping = True
        if self.state not in ("failed",):
            self.state = "stopping"
        me = gevent.getcurrent()
        if self._fork_started:
            try:
                self._call_api(fork_stop(self.call_uuid, self.bugname))
            except Exception as exc:  # noqa: BLE001 - call may be gone already; logged once
                log.info("[%s %s] fork stop: %s", self.call_uuid, self.stream_id, exc)
        module = self._module
        if module is not None:
            module.close(1000)
        if self._start_sent:
            text = self.dialect.closing()
            if text:
                self._app_queue.put(text, control=True)
        self._app_queue.close()
        # let the writer drain what is queued (bounded), then close the app socket
        writer = self._writer_g
        if writer is not None and writer is not me:
            writer.join(timeout=0.2 if self._degraded else 2.0)  # a stalled app gets no grace
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
        ws = self._app_ws
        if ws is None:
            return
        if not self._closing_app:
            self._closing_app = True
            try:
                # bounded: a stalled app whose socket buffer is full would block this forever
                with gevent.Timeout(1.0, TimeoutError("close timeout")):
                    ws.send_close(1000)
            except Exception:  # noqa: BLE001
                pass
            # the reader sees the peer's Close and returns; bounded wait
            reader = self._reader_g
            if reader is not None and reader is not gevent.getcurrent():
                reader.join(timeout=1.0)
        try:
            ws.shutdown()
        except Exception:  # noqa: BLE001
            pass

    def _finish(self, reason: str) -> None:
        if self._done.is_set():
            return
        if self.state != "failed":
            self.state = "ended"
        self.end_reason = reason
        log.info("[%s %s] stream ended: %s", self.call_uuid, self.stream_id, reason)
        self._emit("ended", {"reason": reason})
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the stream has ended; True if it has."""
        return self._done.wait(timeout)

    @property
    def ended(self) -> bool:
        return self._done.is_set()


def _own_frame_reader(ws) -> None:
    """Give the app connection a frame reader (websocket-client's `frame_buffer`, its own parser)
    that reads the socket directly, in place of the one it built over `ws._recv`:
    - websocket-client's reader asks for exactly what the next field needs (3 recv syscalls per
      message); it keeps whatever more it gets, so this one reads what is there (APP_READ_SIZE);
    - its reader holds a bound method of `ws`, a reference cycle (ws -> frame_buffer -> ws._recv
      -> ws) that would leave every ended stream's app connection to the cyclic GC; this one
      holds only the socket's recv."""
    sock_recv = ws.sock.recv

    def recv(_wanted: int) -> bytes:
        data = sock_recv(APP_READ_SIZE)
        if not data:
            raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
        return data

    ws.frame_buffer = websocket.frame_buffer(recv, True)


def _describe_connect_error(exc: Exception) -> str:
    if isinstance(exc, websocket.WebSocketBadStatusException):
        return f"handshake rejected: HTTP {exc.status_code}"
    return f"{type(exc).__name__}: {exc}"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
