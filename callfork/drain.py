"""Leaving the pool: a node's drain (`callfork drain`, `POST /api/v1/ops/drain`, docs/cluster.md).

Owns the drain of one service: once started (a second start changes nothing) the node takes no new
call and exits when its last call has ended.
- FreeSWITCH is told `fsctl pause inbound` (retried until it answers +OK, as the control connection
  may be down). A paused FreeSWITCH 1.10.12 answers every new INVITE and a SIP proxy's OPTIONS
  pings `503 Maximum Calls In Progress` (tests/fixtures/fs-captures/pause-inbound.json), so the
  proxy moves the traffic to the other nodes; the calls it has go on.
- A call that still reaches the outbound socket (it was routed before the pause, or was sent there
  by a transfer) is hung up unanswered with NORMAL_TEMPORARY_FAILURE (a 503 to a SIP caller, who
  may try elsewhere), its UUID logged once; no webhook goes out, the app never saw it. Calls the
  REST API placed before the drain are run; new REST calls are refused (`NodeDraining`, HTTP 503).
- When no call is live and no REST call is on its way, `on_drained` runs (`callfork serve` stops
  the process with it) and `drained` is set.
- FreeSWITCH stays paused when the process exits: nothing answers its socket app any more, and a
  resumed switch would take calls (and answer the proxy's pings 200) only to fail them. The drain
  leaves a marker in data_dir; the next start of callfork on that data_dir resumes FreeSWITCH
  (`resume_after_restart`), so a restarted node rejoins the pool by itself. A switch paused by
  someone else (no marker) is left as it is.
- While this node's drain has FreeSWITCH paused, no loopback channel can be made: mod_loopback's
  second leg is an inbound channel, which a paused switch does not create, so the first leg would
  wait for its whole timeout. `loopback_refusal()` says why ('' when it can be made); a <Dial> leg
  to `loopback/...` (verbs/dialing.py) and a conference Speak to chosen members (a helper loopback
  channel: callfork/conference_api.py) fail at once with it instead (`InboundPaused`). Dial
  strings to `sofia/...` are outbound and unaffected.
- A cluster node marks itself draining in the registry (`service.cluster.registry.set_draining`:
  cluster/registry.py, with [cluster] redis_url), which the other nodes see.
"""
from __future__ import annotations

import logging
import time

import gevent
import gevent.event

log = logging.getLogger("callfork.drain")

MARKER = "freeswitch-paused-by-drain"   # in data_dir: this node's drain paused FreeSWITCH


class NodeDraining(Exception):
    """A new call was asked of a node that is draining (the HTTP API answers 503)."""


class InboundPaused(Exception):
    """A loopback channel was asked for while this node's drain keeps FreeSWITCH paused for inbound
    channels (the message says so)."""


class Drain:
    def __init__(self, service, poll_s: float = 0.25):
        self.service = service
        self.poll_s = poll_s
        self.since: float | None = None       # epoch seconds the drain started
        self.freeswitch_paused = False
        self.pause_error = ""
        self.refused_calls = 0
        self.on_drained = None                # called once the last call has ended
        self.drained = gevent.event.Event()
        self._watcher = None

    @property
    def active(self) -> bool:
        return self.since is not None

    @property
    def marker(self):
        return self.service.data_dir / MARKER

    def start(self) -> dict:
        """Start draining (nothing more if it already is); -> state() with `already_draining`."""
        already = self.active
        if not already:
            self.since = time.time()
            log.warning("draining: no new calls; %d live call(s) will finish, then callfork exits",
                        len(self.service.calls))
            self._mark_registry()
            self._watcher = gevent.spawn(self._run)
        return dict(self.state(), already_draining=already)

    def state(self) -> dict:
        return {"draining": self.active, "since": self.since, "live_calls": len(self.service.calls),
                "pending_originates": self._pending_originates(), "freeswitch_paused": self.freeswitch_paused,
                "pause_error": self.pause_error, "refused_calls": self.refused_calls,
                "drained": self.drained.is_set()}

    def check_new_call(self) -> None:
        """Raises NodeDraining while draining (a REST originate asks for a new call)."""
        if self.active:
            raise NodeDraining("this node is draining: it takes no new calls (place the call on another node)")

    def loopback_refusal(self) -> str:
        """Why a loopback channel cannot be made now: '' unless this node's drain has paused the
        switch (`fsctl pause inbound` answered +OK)."""
        if not self.freeswitch_paused:
            return ""
        return ("FreeSWITCH is paused for inbound channels by this node's drain (fsctl pause inbound), "
                "and a loopback channel's second leg is an inbound one")

    def check_loopback(self) -> None:
        """Raises InboundPaused while a loopback channel cannot be made (loopback_refusal)."""
        refusal = self.loopback_refusal()
        if refusal:
            raise InboundPaused(refusal)

    def refuse(self, session) -> None:
        """A call that reached the outbound socket during the drain: hung up unanswered."""
        self.refused_calls += 1
        log.warning("call %s: refused: this node is draining (NORMAL_TEMPORARY_FAILURE, a SIP 503)", session.uuid)
        session.hangup("NORMAL_TEMPORARY_FAILURE")

    # -- the drain -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if not self.freeswitch_paused:
                self._pause()
            if not self.service.calls and not self._pending_originates():
                break
            gevent.sleep(self.poll_s)
        log.warning("drained: the last call has ended (%d call(s) refused meanwhile)%s", self.refused_calls,
                    "" if self.freeswitch_paused else "; FreeSWITCH was never paused: " + self.pause_error)
        self.drained.set()
        if self.on_drained is not None:
            self.on_drained()

    def _pause(self) -> None:
        try:
            self.marker.write_text(f"{time.time():.0f}\n")   # first: a crash after the pause still resumes
            reply = self.service.control.api("fsctl pause inbound")
        except Exception as exc:
            self._pause_failed(f"{type(exc).__name__}: {exc}")
            return
        if not reply.startswith("+OK"):
            self._pause_failed(reply.strip())
            return
        self.freeswitch_paused, self.pause_error = True, ""
        log.info("FreeSWITCH refuses new inbound calls (fsctl pause inbound); it stays paused after callfork "
                 "exits, until callfork starts again on %s", self.service.data_dir)

    def _pause_failed(self, error: str) -> None:
        if error != self.pause_error:   # once per distinct error: it is retried every poll
            log.error("draining: FreeSWITCH could not be paused (retrying): %s", error)
        self.pause_error = error

    def _pending_originates(self) -> int:
        # REST calls dialled but not yet at the socket (callfork/originate.py)
        return len(getattr(self.service.originations, "_pending", ()))

    def _mark_registry(self) -> None:
        registry = getattr(getattr(self.service, "cluster", None), "registry", None)
        if registry is None:
            return
        try:
            registry.set_draining(True)
        except Exception as exc:   # the registry heals; the drain goes on
            log.error("draining: the cluster registry could not be told: %r", exc)

    # -- at start --------------------------------------------------------------------------------
    def resume_after_restart(self, wait_s: float = 3600.0) -> None:
        """A drain of an earlier process on this data_dir left FreeSWITCH paused: resume it once the
        control connection is up (in the background)."""
        if self.marker.exists():
            gevent.spawn(self._resume, wait_s)

    def _resume(self, wait_s: float) -> None:
        control = self.service.control
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not self.active:
            if control.wait_connected(min(5.0, wait_s)):
                try:
                    reply = control.api("fsctl resume inbound")
                except Exception as exc:
                    log.warning("FreeSWITCH could not be resumed yet (%r); retrying", exc)
                    gevent.sleep(1.0)
                    continue
                if reply.startswith("+OK"):
                    self.marker.unlink(missing_ok=True)
                    log.warning("FreeSWITCH takes inbound calls again (fsctl resume inbound): the previous "
                                "callfork had drained and left it paused")
                    return
                log.error("FreeSWITCH did not resume inbound calls: %s", reply.strip())
                return
