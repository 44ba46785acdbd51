"""The running callfork service: boots every part, owns the live-call registry, runs each call.

Boot order: data directory and auth token → SQLite store + durable outbox (undelivered webhooks
from a previous run go out first; calls a killed process left "live" are closed in their record)
→ media cache → audio relay → FreeSWITCH control connection
(reconnects by itself) → outbound ESL server (FreeSWITCH's `socket` app connects here) → HTTP API.
Each call runs in the outbound server's connection greenlet: `verbs.Interpreter` over a
`verbs.CallContext`.
"""
from __future__ import annotations

import gc
import logging
import re
import secrets
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import gevent
import gevent.event
import gevent.queue
import uuid as uuidlib
from gevent.pywsgi import WSGIServer

from audio_fork import Relay
from esl_app import Config, ControlConnection, OutboundESLServer, load_config
from records import Store
from verbs import SOURCE_API, CallContext, CallEnd, Interpreter, LiveStream, hangup_fields, rest_stream_options
from webhooks import Outbox

from .http_api import create_app
from .media_cache import MediaCache
from .verb_services import VerbServices

log = logging.getLogger("callfork.service")

# the control connection only needs the results of bgapi (originate); calls get their own events on
# their outbound sockets, so per-channel events here would only be parsed and dropped
CONTROL_EVENTS = ("BACKGROUND_JOB",)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("callfork")
    except Exception:
        return "0"


class Service:
    def __init__(self, config: Config):
        self.config = config
        # absolute: FreeSWITCH reads media and writes recordings at these paths, and would resolve a
        # relative one against its own sounds/recordings directory
        self.data_dir = Path(config.server.data_dir).resolve()
        self.recordings_dir = self.data_dir / "recordings"
        self.calls: dict[str, CallContext] = {}
        self.started_at = datetime.now(timezone.utc)
        self.version = _version()
        self.store = self.outbox = self.media = self.relay = self.control = None
        self.outbound = self.http = None
        self.auth_token = ""
        self._feeds = []
        self._originations: dict[str, dict] = {}   # call uuid -> what a REST originate asked for

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "Service":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        self.auth_token = self._auth_token()
        db = self.data_dir / "callfork.sqlite3"
        wh = self.config.webhooks
        self.store = Store(db)
        self.outbox = Outbox(db, auth_token=self.auth_token, retries=wh.retries,
                             backoff_base_s=wh.backoff_base_s, backoff_max_s=wh.backoff_max_s,
                             connect_timeout_s=wh.connect_timeout_s, read_timeout_s=wh.read_timeout_s,
                             user_agent=f"callfork/{self.version}", v3_mode=wh.v3_mode,
                             allow_private=self.config.server.allow_private_urls,
                             concurrency=64)  # slow receivers hold a slot each, up to read_timeout_s
        self.outbox.start()
        self._close_stale_calls()
        self.media = MediaCache(self.data_dir / "media", user_agent=f"callfork/{self.version}",
                                allow_private=self.config.server.allow_private_urls)
        self.relay = Relay(listen=self.config.server.relay_address)
        self.relay.start()
        fs = self.config.freeswitch
        self.control = ControlConnection(fs.esl_host, fs.esl_port, fs.esl_password, events=CONTROL_EVENTS)
        self.control.start()
        self.outbound = OutboundESLServer(listen=self.config.server.outbound_address,
                                          handler=self.handle_call)
        self.outbound.start()
        self.http = WSGIServer(self.config.server.http_address, create_app(self), log=None)
        self.http.start()
        log.info("callfork %s: FreeSWITCH socket app → %s:%s, relay %s:%s, HTTP http://%s:%s",
                 self.version, *self.outbound.address, *self.relay.address, *self.http.address)
        return self

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
        # hang the live calls up while their sockets are still open, so each call greenlet sees the
        # hangup and posts its webhook (SYSTEM_SHUTDOWN, by callfork); only then close the server
        for ctx in list(self.calls.values()):
            try:
                ctx.request_hangup(CallEnd(5000, "Vobiz", "SYSTEM_SHUTDOWN", "callfork was shut down"),
                                   "SYSTEM_SHUTDOWN")
            except Exception as exc:
                log.warning("call %s: hangup at shutdown failed: %r", ctx.uuid, exc)
        deadline = time.monotonic() + 6
        while self.calls and time.monotonic() < deadline:
            gevent.sleep(0.05)  # let each call post its hangup webhook (into the durable outbox)
        if self.outbound is not None:
            self.outbound.stop()
        for part in (self.control, self.relay):
            if part is not None:
                part.stop()
        if self.outbox is not None:
            self.outbox.flush(timeout=5)
            self.outbox.stop()
        if self.store is not None:
            self.store.flush()   # the timeline rows the store still holds (records/store.py: flush_delay_s)

    def _close_stale_calls(self) -> None:
        """Calls a previous process left live (it was killed): they are over, say so in their record."""
        now = datetime.now(timezone.utc).timestamp()
        while True:
            stale = self.store.list_calls(live_only=True, limit=100)
            if not stale:
                return
            for call in stale:
                self.store.upsert_call(call["uuid"], status="completed", end_time=now,
                                       error="; ".join(filter(None, [call.get("error"),
                                                                     "callfork stopped during the call"])))
                self.store.add_event(call["uuid"], "service_restarted",
                                     {"message": "callfork stopped during the call; no hangup webhook was sent"})

    def _auth_token(self) -> str:
        """The configured token, or one generated on first start and kept in data_dir."""
        if self.config.server.auth_token:
            return self.config.server.auth_token
        path = self.data_dir / "auth_token"
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        token = secrets.token_urlsafe(24)   # (an empty file, e.g. from a full disk, is replaced)
        path.write_text(token + "\n")
        path.chmod(0o600)
        print(f"callfork: generated REST auth token for {self.config.server.auth_id}: {token} "
              f"(kept in {path})", flush=True)
        return token

    # -- calls -----------------------------------------------------------------------------------
    def handle_call(self, session) -> None:
        """One call, start to end (runs in the outbound connection's greenlet)."""
        number = self._outbound_number(session) or self.config.find_number(session.destination_number)
        if number is None:
            log.error("call %s: no [[numbers]] entry matches %r: rejecting it (UNALLOCATED_NUMBER)",
                      session.uuid, session.destination_number)
            session.hangup("UNALLOCATED_NUMBER")
            return
        ctx = CallContext(session, VerbServices(self, number))
        if getattr(number, "to", None):
            ctx.to_number = number.to  # what the REST caller asked to dial
        answered = bool(session.answered)  # a REST call is answered before it reaches us
        self.store.upsert_call(ctx.uuid, direction=ctx.direction, from_number=ctx.from_number,
                               to_number=ctx.to_number, answer_url=number.answer_url,
                               status="in-progress" if answered else "ringing",
                               start_time=ctx.session_start.timestamp(),
                               answer_time=ctx.session_start.timestamp() if answered else None)
        self.calls[ctx.uuid] = ctx
        try:
            Interpreter(ctx).run()
        finally:
            self.calls.pop(ctx.uuid, None)

    def _outbound_number(self, session):
        """A call placed by the REST API: its URLs were kept at originate, keyed by its uuid."""
        v = self._originations.pop(session.uuid, None)
        if v is None:
            return None
        if v.get("callfork_time_limit"):
            session.api(f"sched_hangup +{int(v['callfork_time_limit'])} {session.uuid} ALLOTTED_TIMEOUT")
        return SimpleNamespace(number=v["callfork_to"], to=v["callfork_to"], answer_url=v["callfork_answer_url"],
                               answer_method=v.get("callfork_answer_method", "POST"),
                               hangup_url=v.get("callfork_hangup_url", ""),
                               hangup_method=v.get("callfork_hangup_method", "POST"),
                               fallback_url=v.get("callfork_fallback_url", ""),
                               fallback_method=v.get("callfork_fallback_method", "POST"), l16_byte_order=None)

    # -- what the HTTP API asks (callfork/http_api.py) -------------------------------------------------
    def record_event(self, call_uuid: str, kind: str, detail: dict) -> None:
        self.store.add_event(call_uuid, kind, detail)
        if kind == "answered":
            self.store.upsert_call(call_uuid, status="in-progress",
                                   answer_time=datetime.now(timezone.utc).timestamp())
        item = {"call_uuid": call_uuid, "kind": kind, "detail": detail,
                "time": datetime.now(timezone.utc).isoformat()}
        for feed in list(self._feeds):
            try:
                feed.put_nowait(item)
            except gevent.queue.Full:
                pass  # a slow follower loses events, never the call

    def subscribe_events(self):
        feed = gevent.queue.Queue(maxsize=1000)
        self._feeds.append(feed)
        return feed

    def unsubscribe_events(self, feed) -> None:
        if feed in self._feeds:
            self._feeds.remove(feed)

    def hangup_call(self, uuid: str) -> bool:
        ctx = self.calls.get(uuid)
        if ctx is None or ctx.session.gone:
            return False
        ctx.request_hangup(CallEnd(4000, SOURCE_API, "NORMAL_CLEARING"))
        return True

    def transfer_call(self, uuid: str, url: str, method: str) -> bool:
        ctx = self.calls.get(uuid)
        if ctx is None or ctx.session.gone:
            return False
        ctx.request_transfer(url, method)
        gevent.spawn(self._break_until_transferred, ctx)
        return True

    @staticmethod
    def _break_until_transferred(ctx, every_s: float = 0.2, limit_s: float = 5.0) -> None:
        """A transfer that lands while a verb is between FreeSWITCH apps (its prompt not yet started)
        would let that prompt play in full: break the media again until the interpreter took the
        transfer (or the call is gone)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            gevent.sleep(every_s)
            if not ctx.transfer_requested() or ctx.session.gone:
                return
            try:
                ctx.session.break_media()
            except Exception:  # the call went away meanwhile
                return

    def originate(self, *, from_number, to, answer_url, answer_method="POST", hangup_url="",
                  hangup_method="POST", caller_name="", time_limit=14400, ring_timeout=60,
                  fallback_url="", fallback_method="POST") -> str:
        """Place an outbound call; it comes back to the outbound server through `socket`.
        Returns the request UUID at once (the call proceeds in the background, as on Vobiz).
        ValueError (nothing was dialled) when a value cannot go safely into the originate command."""
        if not _DIAL_TEXT.fullmatch(str(to)):
            raise ValueError("to: a number or SIP-style destination (letters, digits and + * # . @ / : _ -)")
        if not _DIAL_TEXT.fullmatch(str(from_number)):
            raise ValueError("from: a number (letters, digits and + * # . @ / : _ -)")
        request_uuid = str(uuidlib.uuid4())
        call_uuid = str(uuidlib.uuid4())
        variables = {
            "origination_uuid": call_uuid,
            "origination_caller_id_number": from_number,
            "origination_caller_id_name": caller_name or from_number,
            "originate_timeout": ring_timeout,
            "callfork_request_uuid": request_uuid,
            # the call is answered before callfork gets it: park must find this set when media came
            # up, or it writes no audio while the call idles (verbs/idle_audio.py)
            "send_silence_when_idle": -1,
            "callfork_to": to,
            "callfork_answer_url": answer_url,
            "callfork_answer_method": answer_method,
            "callfork_hangup_url": hangup_url,
            "callfork_hangup_method": hangup_method,
            "callfork_fallback_url": fallback_url,
            "callfork_fallback_method": fallback_method,
            "callfork_time_limit": time_limit,
        }
        # Only what FreeSWITCH needs goes into the originate command; the URLs stay here, keyed by
        # the call's uuid (a URL's commas would be split by originate's {a=b,c=d} parsing).
        on_channel = ("origination_uuid", "origination_caller_id_number", "origination_caller_id_name",
                      "originate_timeout", "callfork_request_uuid", "send_silence_when_idle")
        var_text = ",".join(f"{k}='{_originate_value(k, variables[k])}'" for k in on_channel)
        dialstring = self.config.freeswitch.originate_dialstring.replace("{to}", to)
        command = (f"originate {{{var_text}}}{dialstring} "
                   f"&socket('{self.config.server.outbound_listen} async full')")
        self._originations[call_uuid] = variables
        self.store.add_event(call_uuid, "originate", {"request_uuid": request_uuid, "to": to, "from": from_number,
                                                      "answer_url": answer_url})
        gevent.spawn(self._originate, command, request_uuid, call_uuid, variables)
        return request_uuid

    def _originate(self, command, request_uuid, call_uuid, variables) -> None:
        started = datetime.now(timezone.utc)
        try:
            result = self.control.bgapi(command, timeout=int(variables["originate_timeout"]) + 30)
        except Exception as exc:
            result = f"-ERR {exc}"
        if result.startswith("+OK"):
            return
        self._originations.pop(call_uuid, None)
        words = result[4:].strip().split() if result.startswith("-ERR") else []
        cause = words[0] if words and words[0].isupper() else "NORMAL_TEMPORARY_FAILURE"
        log.error("outbound call %s (request %s) to %s failed: %s", call_uuid, request_uuid,
                  variables["callfork_to"], result.strip())
        url = variables["callfork_hangup_url"] or variables["callfork_answer_url"]
        status, end = _ORIGINATE_FAILURES.get(cause, ("failed", CallEnd(5000, "Carrier", cause)))
        now = datetime.now(timezone.utc)
        error = f"originate failed: {result.strip()}"
        base = {"CallUUID": call_uuid, "RequestUUID": request_uuid, "ALegUUID": call_uuid,
                "ALegRequestUUID": request_uuid, "Direction": "outbound",
                "From": variables["origination_caller_id_number"], "To": variables["callfork_to"],
                "CallerName": variables["origination_caller_id_name"], "BillRate": "0",
                "SessionStart": started.strftime("%Y-%m-%d %H:%M:%S.%f"),
                "STIRAttestation": "Not Applicable", "STIRVerification": "Not Applicable",
                "ParentAuthID": self.config.server.auth_id}
        # never answered, never reached callfork: no call context, and a Duration of 0
        params = hangup_fields(base, end, cause, start=started.timestamp(), answer=None, finish=now.timestamp(),
                               error=error, status=status, duration=0)
        self.store.upsert_call(call_uuid, direction="outbound", from_number=variables["origination_caller_id_number"],
                               to_number=variables["callfork_to"], answer_url=variables["callfork_answer_url"],
                               status=status, start_time=started.timestamp(), end_time=now.timestamp(),
                               hangup_cause=cause, hangup_cause_code=end.code, hangup_cause_name=end.name,
                               hangup_source=end.source, error=error)
        self.record_event(call_uuid, "error", {"message": error})
        self.outbox.enqueue(call_uuid, url, variables["callfork_hangup_method"], params, event="Hangup")
        self.record_event(call_uuid, "webhook_queued", {"event": "Hangup", "url": url})

    def start_stream(self, uuid: str, body: dict) -> str:
        """REST `POST .../Stream/`: start a stream on a live call; returns its id at once."""
        ctx = self.calls.get(uuid)
        if ctx is None or ctx.session.gone:
            raise ValueError("call not found or already ended")
        try:
            options = rest_stream_options(body)
        except (TypeError, AttributeError) as exc:   # a JSON value of the wrong type
            raise ValueError(f"invalid stream parameters: {exc}") from None
        stream = LiveStream(ctx, options)
        gevent.spawn(self._start_rest_stream, ctx, stream)
        return stream.stream_id

    @staticmethod
    def _start_rest_stream(ctx, stream) -> None:
        """A REST-started stream, off the call's greenlet: its failures end the stream, never the call."""
        try:
            stream.start()
        except Exception as exc:
            if not ctx.session.gone:
                log.error("call %s: REST stream %s could not start: %r", ctx.uuid, stream.stream_id, exc)

    def stop_stream(self, uuid: str, stream_id: str) -> bool:
        ctx = self.calls.get(uuid)
        stream = ctx.streams.get(stream_id) if ctx else None
        if stream is None or stream.ended.is_set():
            return False
        stream.stop("api")
        return True

    def stop_all_streams(self, uuid: str) -> int:
        ctx = self.calls.get(uuid)
        if ctx is None:
            return 0
        live = [s for s in ctx.streams.values() if not s.ended.is_set()]
        for stream in live:
            stream.stop("api")
        return len(live)

    def metrics(self) -> dict:
        relay = self.relay
        return {
            "live_calls": ("gauge", "calls in progress", len(self.calls)),
            "live_streams": ("gauge", "audio streams in progress", relay.streams_live),
            "frames_relayed_total": ("counter", "20 ms audio frames relayed (both directions)",
                                     relay.frames_in + relay.frames_out),
            "app_messages_dropped_total": ("counter", "messages to stream apps dropped: an app did not keep up",
                                           relay.app_dropped),
            "app_protocol_errors_total": ("counter", "messages from stream apps ignored as malformed or unknown",
                                          relay.protocol_errors),
            "playout_dropped_bytes_total": ("counter", "app audio dropped: a stream's playout queue was full",
                                            relay.playout_dropped_bytes),
            "module_overruns_total": ("counter", "mod_audio_fork buffer overruns (audio to an app dropped)",
                                      relay.module_overruns),
            "relay_rejected_total": ("counter", "module connections refused (unknown stream or bad token)",
                                     relay.rejected),
            "webhook_queue_depth": ("gauge", "webhooks waiting for delivery", self.outbox.depth()),
            "webhook_failed_total": ("counter", "webhooks given up after all retries", self.outbox.failed_count()),
            "webhook_delivered_total": ("counter", "webhooks delivered", self.outbox.delivered_count()),
            "esl_connected": ("gauge", "1 when the FreeSWITCH control connection is up", int(self.control.connected)),
            "esl_reconnects_total": ("counter", "FreeSWITCH control connection reconnects", self.control.reconnects),
        }


# what `to` and `from` may contain: they go into the originate command unquoted
_DIAL_TEXT = re.compile(r"[A-Za-z0-9+*#.@/:_-]{1,128}")

# why an originate failed (FreeSWITCH cause) -> (CallStatus, Vobiz hangup code)
_ORIGINATE_FAILURES = {
    "USER_BUSY": ("busy", CallEnd(3010, "Callee", "USER_BUSY")),
    "NO_ANSWER": ("no-answer", CallEnd(3000, "Callee", "NO_ANSWER")),
    "NO_USER_RESPONSE": ("no-answer", CallEnd(3000, "Callee", "NO_USER_RESPONSE")),
    "CALL_REJECTED": ("failed", CallEnd(3020, "Callee", "CALL_REJECTED")),
    "ORIGINATOR_CANCEL": ("cancel", CallEnd(1000, "Caller", "ORIGINATOR_CANCEL")),
    "PROGRESS_TIMEOUT": ("timeout", CallEnd(6010, "Vobiz", "PROGRESS_TIMEOUT")),
}


def _originate_value(name: str, value) -> str:
    """A channel-variable value inside originate's {...}: single-quoted, so commas and spaces
    survive; what could end the quote or the variable block is refused."""
    text = str(value)
    bad = set(text) & set("'{}[]<>^")
    if bad or any(ord(ch) < 32 for ch in text):
        shown = "".join(sorted(bad)) or "control characters"
        raise ValueError(f"{name.replace('callfork_', '').replace('origination_', '')}: "
                         f"{shown!r} not allowed here")
    return text


def freeze_startup_heap() -> None:
    """Once the service has started: collect, then move every object alive now (modules, config,
    compiled templates, pools) to the GC's permanent generation. Full (generation 2) collections
    then traverse only what was allocated since, instead of pausing the whole hub for tens of
    ms to re-check start-up objects that live as long as the process. Costs no memory: nothing
    is kept that refcounting would free, and the collect before it leaves no start-up garbage."""
    gc.collect()
    gc.freeze()


def run_service(config_path: str | None = None, env=None) -> int:
    """`callfork serve`. Without a config file (no --config, no $CALLFORK_CONFIG) the loopback
    defaults apply and every number is answered by the built-in sample application, started
    in-process on a free loopback port (README, Configuration). Once the service runs, its start-up heap is
    frozen (`freeze_startup_heap`)."""
    import dataclasses
    import os

    from esl_app.config import NumberConfig

    env = os.environ if env is None else env
    config = load_config(config_path, env=env)
    sample = None
    if config.source is None:
        from .demo_app import SampleApp

        sample = SampleApp().start()
        config = dataclasses.replace(config, numbers=[NumberConfig(
            number="*", answer_url=sample.answer_url, hangup_url=sample.hangup_url)])
        print(f"callfork: no config file (--config or CALLFORK_CONFIG): loopback defaults, and every number "
              f"is answered by the built-in sample app at {sample.answer_url} "
              f"(echo bot at {sample.ws_url}/echo)", flush=True)
    try:
        service = Service(config).start()
    except OSError as exc:
        if sample is not None:
            sample.stop()
        print(f"callfork serve: cannot start: {exc} (is another callfork running? the listen addresses are "
              f"[server] outbound_listen, http_listen, relay_listen)", file=sys.stderr, flush=True)
        return 1
    freeze_startup_heap()
    fs = config.freeswitch
    print(f"callfork: HTTP API http://{service.http.address[0]}:{service.http.address[1]} "
          f"(auth id {config.server.auth_id}), FreeSWITCH socket app -> "
          f"{service.outbound.address[0]}:{service.outbound.address[1]}, event socket "
          f"{fs.esl_host}:{fs.esl_port}, data in {service.data_dir.resolve()}", flush=True)
    stop = gevent.event.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stop.set)
    stop.wait()
    log.info("stopping")
    service.stop()
    if sample is not None:
        sample.stop()
    return 0
