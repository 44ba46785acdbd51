"""The running callfork service: boots every part, owns the live-call registry, runs each call.

Boot order: data directory and auth token → SQLite store + durable outbox (undelivered webhooks
from a previous run go out first; calls a killed process left "live" are closed in their record)
→ media cache → audio relay → FreeSWITCH control connection
(reconnects by itself) → outbound ESL server (FreeSWITCH's `socket` app connects here) → HTTP API.
Each call runs in the outbound server's connection greenlet: `verbs.Interpreter` over a
`verbs.CallContext`. What the HTTP API asks of the running service is here too; calls it places
(originate) are in originate.py, the `callfork serve` command in serve.py.
"""
from __future__ import annotations

import gc
import logging
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

import gevent
import gevent.queue

from audio_fork import Relay
from esl_app import Config, ControlConnection, LegEvents, OutboundESLServer
from records import PgStore, PgUnavailable, Store
from verbs import SOURCE_API, CallContext, CallEnd, Interpreter, LiveStream, rest_stream_options
from webhooks import Outbox, PgOutbox

from .cluster_node import ClusterNode, node_id_for
from .drain import Drain
from .data_dir import private_database, private_dir, tighten, write_private
from .http_api import create_app
from .http_server import HttpServer, open_fds
from .live_controls import LiveControls
from .media_cache import MediaCache
from .originate import Originations
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
        self.store = self.outbox = self.media = self.relay = self.control = self.leg_events = None
        self.outbound = self.http = None
        self.own_outbound = None   # `--workers N`: where this worker's REST calls come back (below)
        self.auth_token = ""
        self._feeds = []
        self.originations = Originations(self)   # calls placed by the REST API, until they reach us
        self.live = LiveControls(self)   # Play/Speak/DTMF/Record on live calls (REST)
        self.drain = Drain(self)         # leaving the pool (callfork/drain.py)
        self.node_id = node_id_for(config)   # [cluster] node_id, else hostname-pid; "" for a single node
        self.cluster = None                  # callfork/cluster_node.py, with [cluster] redis_url

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "Service":
        for directory in (self.data_dir, self.recordings_dir, self.data_dir / "media"):
            private_dir(directory)   # 0700: callfork's user only (callfork/data_dir.py)
        self.auth_token = self._auth_token()
        db = self.data_dir / "callfork.sqlite3"
        private_database(db)
        wh = self.config.webhooks
        max_bytes = int(self.config.server.db_max_mb * 1024 * 1024) or None
        # [store] postgres_dsn: records and outbox in PostgreSQL, shared by the nodes (docs/cluster.md)
        dsn, node_id = self.config.store.postgres_dsn, getattr(self, "node_id", "")
        self.store = PgStore(dsn, node_id=node_id) if dsn else Store(db, max_bytes=max_bytes)
        window = wh.retry_mode == "window"
        # concurrency: slow receivers hold a slot each, up to read_timeout_s; per host: one dead
        # receiver cannot take them all
        outbox = dict(auth_token=self.auth_token, retries=None if window else wh.retries,
                      retry_window_s=wh.retry_window_s if window else None,
                      backoff_base_s=wh.backoff_base_s, backoff_max_s=wh.backoff_max_s,
                      connect_timeout_s=wh.connect_timeout_s, read_timeout_s=wh.read_timeout_s,
                      user_agent=f"callfork/{self.version}", v3_mode=wh.v3_mode,
                      allow_private=self.config.server.allow_private_urls,
                      concurrency=wh.concurrency, per_host_concurrency=wh.per_host_concurrency,
                      retention_s=wh.retention_s or None, memory_limit=wh.memory_queue)
        self.outbox = (PgOutbox(dsn, node_id=node_id or "single", lease_s=self.config.store.lease_s, **outbox)
                       if dsn else Outbox(db, max_db_bytes=max_bytes, **outbox))
        self.outbox.start()
        self._close_stale_calls()
        self.media = MediaCache(self.data_dir / "media", user_agent=f"callfork/{self.version}",
                                allow_private=self.config.server.allow_private_urls)
        self.relay = Relay(listen=self.config.server.relay_address)
        self.relay.start()
        fs = self.config.freeswitch
        self.control = ControlConnection(fs.esl_host, fs.esl_port, fs.esl_password, events=CONTROL_EVENTS)
        self.control.start()
        self.drain.resume_after_restart()   # a drain of the previous process left FreeSWITCH paused
        # the channels calls dial (<Dial>'s B-legs) report on a connection of their own
        self.leg_events = LegEvents(fs.esl_host, fs.esl_port, fs.esl_password).start()
        if self.config.cluster.redis_url:   # registered before calls can come (a Redis away does not stop us)
            self.cluster = ClusterNode(self).start()
        shared = self.config.server.workers > 1   # `--workers N`: these two ports are shared (callfork/workers.py)
        self.outbound = OutboundESLServer(listen=self.config.server.outbound_address,
                                          handler=self.handle_call, reuse_port=shared)
        self.outbound.start()
        if shared:   # a REST call this worker places must come back to it, not to whichever worker the
            # kernel hands the shared port's connection to: it alone knows the call (callfork/originate.py)
            self.own_outbound = OutboundESLServer(listen=(self.config.server.outbound_address[0], 0),
                                                  handler=self.handle_call)
            self.own_outbound.start()
        server = self.config.server
        self.http = HttpServer(server.http_address, create_app(self), max_connections=server.http_max_connections,
                               idle_timeout_s=server.http_idle_timeout_s, max_body_bytes=server.http_max_body_bytes,
                               fd_reserve=server.fd_reserve, reuse_port=shared)
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
        for outbound in (self.outbound, self.own_outbound):
            if outbound is not None:
                outbound.stop()
        if self.cluster is not None:
            self.cluster.stop()
        for part in (self.control, self.leg_events, self.relay):
            if part is not None:
                part.stop()
        pg = bool(self.config.store.postgres_dsn)   # PostgreSQL: their connections are closed too
        if self.outbox is not None:
            self.outbox.flush(timeout=5)
            self.outbox.close() if pg else self.outbox.stop()
        if self.store is not None:
            self.store.close() if pg else self.store.flush()   # the timeline rows the store still holds

    def _close_stale_calls(self) -> None:
        """Calls a previous process left live (it was killed): they are over, say so in their record."""
        if self.config.store.postgres_dsn:   # only this node's: the other nodes' calls may be live
            if self.config.cluster.redis_url:
                return   # a cluster node hangs them up and sends their webhooks too (callfork/node_death.py)
            try:
                self.store.close_calls_of(getattr(self, "node_id", ""))
            except PgUnavailable as exc:
                log.error("could not close the calls this node left live: %s", exc)
            return
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
        path = self.data_dir / "auth_token"
        tighten(path)   # one an earlier run (or a person) left readable by others
        if self.config.server.auth_token:
            return self.config.server.auth_token
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        token = secrets.token_urlsafe(24)   # (an empty file, e.g. from a full disk, is replaced)
        write_private(path, token + "\n")
        print(f"callfork: generated REST auth token for {self.config.server.auth_id}: {token} "
              f"(kept in {path})", flush=True)
        return token

    # -- calls -----------------------------------------------------------------------------------
    def handle_call(self, session) -> None:
        """One call, start to end (runs in the outbound connection's greenlet)."""
        placed = self.originations.number_for(session)   # a REST call: run it, even while draining
        if placed is None and self.drain.active:
            self.drain.refuse(session)
            return
        number = placed or self.config.find_number(session.destination_number)
        if number is None:
            log.error("call %s: no [[numbers]] entry matches %r: rejecting it (UNALLOCATED_NUMBER)",
                      session.uuid, session.destination_number)
            session.hangup("UNALLOCATED_NUMBER")
            return
        ctx = CallContext(session, VerbServices(self, number))
        if getattr(number, "to", None):
            # a REST call: the parties its request named (FreeSWITCH gave the channel another caller id)
            ctx.set_parties(number.from_number, number.to, number.caller_name)
        answered = bool(session.answered)  # a REST call is answered before it reaches us
        try:   # (a database that refuses writes keeps them: records/store.py; this is for the rest)
            self.store.upsert_call(ctx.uuid, direction=ctx.direction, from_number=ctx.from_number,
                                   to_number=ctx.to_number, answer_url=number.answer_url,
                                   status="in-progress" if answered else "ringing",
                                   start_time=ctx.session_start.timestamp(),
                                   answer_time=ctx.session_start.timestamp() if answered else None)
        except Exception:
            log.exception("call %s: could not record the call; running it anyway", ctx.uuid)
        self.calls[ctx.uuid] = ctx
        if self.cluster is not None:
            self.cluster.call_started(ctx.uuid, {
                "direction": ctx.direction, "from_number": ctx.from_number, "to_number": ctx.to_number,
                "answer_url": number.answer_url, "status": "in-progress" if answered else "ringing",
                "start_time": ctx.session_start.timestamp(),
                "answer_time": ctx.session_start.timestamp() if answered else None,
                "request_uuid": ctx.session.variables.get("callfork_request_uuid")})   # a REST call's
        if placed is not None and self.originations.arrived(ctx.uuid):
            log.info("call %s: cancelled through the API while it was coming to callfork: hanging it up", ctx.uuid)
            self.hangup_call(ctx.uuid)
        try:
            Interpreter(ctx).run()
        finally:
            self.calls.pop(ctx.uuid, None)
            if self.cluster is not None:
                self.cluster.call_ended(ctx.uuid)

    # -- what the HTTP API asks (callfork/http_api.py) -------------------------------------------------
    def record_event(self, call_uuid: str, kind: str, detail: dict) -> None:
        self.store.add_event(call_uuid, kind, detail)
        if kind == "answered":
            self.store.upsert_call(call_uuid, status="in-progress",
                                   answer_time=datetime.now(timezone.utc).timestamp())
        item = {"call_uuid": call_uuid, "kind": kind, "detail": detail,
                "time": datetime.now(timezone.utc).isoformat()}
        if self.cluster is not None:   # streams and rooms it owns now, or no longer
            self.cluster.event(call_uuid, kind, detail)
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

    def transfer_call(self, uuid: str, url: str, method: str, document: str | None = None) -> bool:
        """Continue the live call with the document at `url`, or with `document` (an inline one)."""
        ctx = self.calls.get(uuid)
        if ctx is None or ctx.session.gone:
            return False
        ctx.request_transfer(url, method, document)
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

    def originate(self, **request) -> str:
        """Place an outbound call (callfork/originate.py: Originations.originate); returns the
        request UUID at once. ValueError: nothing was dialled; NodeDraining: the node is draining."""
        self.drain.check_new_call()
        return self.originations.originate(**request)

    def start_stream(self, uuid: str, body: dict, stream=None) -> str:
        """REST `POST .../Stream/`: start a stream on a live call; returns its id at once. `stream`:
        a LiveStream the caller made (Twilio's Streams.json), instead of one from `body`."""
        ctx = self.calls.get(uuid)
        if ctx is None or ctx.session.gone:
            raise ValueError("call not found or already ended")
        if stream is None:
            try:
                options = rest_stream_options(body)
            except (TypeError, AttributeError, OverflowError) as exc:   # a JSON value of the wrong type (or inf)
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

    def storage_health(self) -> tuple[dict, list]:
        """(figures, problems) about the database and the webhook queue, for /healthz. A database
        that refuses writes is a problem (calls go on; what it refused waits in memory:
        records/store.py, webhooks/outbox.py); receivers that are down are not callfork's."""
        store, webhooks = self.store.health(), self.outbox.stats()
        writable = store["writable"] and webhooks["writable"] and not webhooks["unsaved"]
        database = {"writable": writable, "error": store["error"] or webhooks["write_error"],
                    "kept_writes": store["kept"], "dropped_writes": store["dropped"],
                    "unsaved_webhooks": webhooks["unsaved"], "lost_webhooks": webhooks["lost"]}
        queue = {"depth": webhooks["depth"], "held": webhooks["held"], "failed": webhooks["failed"],
                 "oldest_pending_age_s": round(webhooks["oldest_pending_age_s"], 3),
                 "hosts_down": sorted(webhooks["hosts_down"])}
        problems = [] if writable else [
            f"the database refuses writes ({database['error']}): {store['kept']} call-record writes and "
            f"{webhooks['unsaved']} webhooks wait in memory"]
        return {"database": database, "webhooks": queue}, problems

    def metrics(self) -> dict:
        relay = self.relay
        store, webhooks = self.store.health(), self.outbox.stats()
        writable = store["writable"] and webhooks["writable"] and not webhooks["unsaved"]
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
            "webhook_queue_depth": ("gauge", "webhooks waiting for delivery", webhooks["depth"]),
            "webhook_oldest_pending_age_seconds": ("gauge", "age of the oldest webhook waiting for delivery",
                                                   round(webhooks["oldest_pending_age_s"], 3)),
            "webhook_held": ("gauge", "webhooks held behind a failed earlier webhook of their call",
                             webhooks["held"]),
            "webhook_failed_total": ("counter", "webhooks failed (kept until retried)", webhooks["failed"]),
            "webhook_delivered_total": ("counter", "webhooks delivered (within the retention)",
                                        webhooks["delivered"]),
            "webhook_host_failed": ("gauge", "failed webhooks kept, by receiver host",
                                    {_label(host=h): n for h, n in webhooks["failed_by_host"].items()}),
            "webhook_host_down": ("gauge", "failed rounds in a row of a receiver host that is down "
                                           "(nothing goes to it until its pause ends)",
                                  {_label(host=h): f for h, (f, _) in webhooks["hosts_down"].items()}),
            "webhook_unsaved": ("gauge", "webhooks kept in memory: the database refuses writes",
                                webhooks["unsaved"]),
            "webhook_lost_total": ("counter", "webhooks lost: the database refused them and the memory "
                                              "queue was full", webhooks["lost"]),
            "database_writable": ("gauge", "1 when the database takes writes", int(writable)),
            "store_kept_writes": ("gauge", "call-record writes kept in memory: the database refuses writes",
                                  store["kept"]),
            "store_dropped_writes_total": ("counter", "call-record writes lost: the database refused them "
                                                      "and the memory backlog was full", store["dropped"]),
            "esl_connected": ("gauge", "1 when the FreeSWITCH control connection is up", int(self.control.connected)),
            "draining": ("gauge", "1 while the node drains (callfork drain)", int(self.drain.active)),
            "drain_refused_calls_total": ("counter", "calls refused at the socket while draining",
                                          self.drain.refused_calls),
            "esl_reconnects_total": ("counter", "FreeSWITCH control connection reconnects", self.control.reconnects),
            "http_connections": ("gauge", "HTTP connections being served", self.http.connections),
            "http_refused_total": ("counter", "HTTP connections refused: file descriptors ran short",
                                   self.http.refused),
            "open_fds": ("gauge", "file descriptors open in the process", open_fds() or 0),
        }

    def resource_health(self) -> tuple[dict, list]:
        """(figures, problems) about the HTTP connections and file descriptors, for /healthz."""
        return self.http.health()


def _label(**labels) -> str:
    """Prometheus label text, e.g. host="a:1" (backslash, double quote and newline escaped)."""
    def escape(value) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return ",".join(f'{key}="{escape(value)}"' for key, value in labels.items())


def freeze_startup_heap() -> None:
    """Once the service has started: collect, then move every object alive now (modules, config,
    compiled templates, pools) to the GC's permanent generation. Full (generation 2) collections
    then traverse only what was allocated since, instead of pausing the whole hub for tens of
    ms to re-check start-up objects that live as long as the process. Costs no memory: nothing
    is kept that refcounting would free, and the collect before it leaves no start-up garbage."""
    gc.collect()
    gc.freeze()


