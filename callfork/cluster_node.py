"""This service as a node of a cluster ([cluster] redis_url): its id and advertised URL, the live
registry (cluster/registry.py) started and stopped with it, what the service's calls and timeline
events change in what it owns, and what the HTTP API reads from the cluster (the live calls of
every node, /healthz's cluster figures). Without [cluster] redis_url the service has none
(`service.cluster` is None) and nothing here runs.

With a shared PostgreSQL store the node also keeps a heartbeat there (records/node_beats.py, every
heartbeat_s), next to its records: a node whose Redis key expired but whose PostgreSQL heartbeat is
recent lost Redis alone and is alive, and its calls are left alone (it writes its registry again
when Redis answers it). A node's calls are closed (callfork/node_death.py: hung up, hangup
webhook, record) only when both are stale: by the first survivor whose sweep of the stale
PostgreSQL rows finds the node's Redis key gone too, or whose Redis prune finds its PostgreSQL row
stale or absent; and by the node's own next process at its start. The node id is claimed in both
at start: one another live instance holds refuses the start (cluster/instance.py NodeIdTaken). An
engine that was away at start is claimed in once it answers; a live twin found then keeps the id
(Redis: this node writes nothing of its own there and /healthz says degraded until it can take it;
PostgreSQL: each heartbeat logs the twin and writes no heartbeat for this node).
"""
from __future__ import annotations

import logging
import os
import socket
import time

import gevent

from cluster import Instance, NodeIdTaken, Registry, RegistryUnavailable

from . import node_death

log = logging.getLogger("callfork.cluster")

WILDCARDS = ("", "0.0.0.0", "::", "[::]")
# the record fields a call's registry entry carries, so that other nodes can list it
SUMMARY_FIELDS = ("direction", "from_number", "to_number", "status", "start_time", "answer_time", "answer_url",
                  "request_uuid")


def node_id_for(config) -> str:
    """[cluster] node_id, else `<hostname>-<pid>` in a cluster; empty for a single node."""
    if config.cluster.node_id:
        return config.cluster.node_id
    return f"{socket.gethostname()}-{os.getpid()}" if config.cluster.redis_url else ""


def advertise_url_for(config) -> str:
    """Where other nodes reach this node's HTTP API: [cluster] advertise_url, else http://<http_listen>
    (a wildcard host replaced by this host's name)."""
    if config.cluster.advertise_url:
        return config.cluster.advertise_url.rstrip("/")
    host, _, port = config.server.http_listen.rpartition(":")
    if host in WILDCARDS:
        host = socket.gethostname()
    return f"http://{host}:{port}"


class ClusterNode:
    def __init__(self, service):
        self.service = service
        cfg = service.config.cluster
        self.node_id = service.node_id
        self.heartbeat_s, self.node_ttl_s = cfg.heartbeat_s, cfg.node_ttl_s
        self.instance = Instance.this_process()
        self.registry = Registry(cfg.redis_url, self.node_id, advertise_url_for(service.config),
                                 heartbeat_s=cfg.heartbeat_s, node_ttl_s=cfg.node_ttl_s,
                                 started_at=service.started_at, instance=self.instance)
        # the PostgreSQL heartbeat: with a shared store only (a node with its own SQLite closes its
        # calls itself when it starts again)
        node_beats = getattr(service.store, "node_beats", None)
        self.beats = node_beats() if node_beats is not None else None
        self._beater = None
        self._claimed = False   # the node id claimed in PostgreSQL (at start, else once it answers)

    def start(self) -> "ClusterNode":
        """Claim the node id (NodeIdTaken, an OSError: `callfork serve` exits 1 saying so), register,
        and close what this node id's previous process left live."""
        if self.beats is not None:
            self._claimed = self._claim_in_postgres()
        self.registry.on_dead_node(self._dead_node)
        try:
            self.registry.start()
        except NodeIdTaken:
            if self.beats is not None:   # give the id back in PostgreSQL: its live holder's heartbeat
                try:                     # inserts its row again (records/node_beats.py beat)
                    self.beats.leave(self.node_id, self.instance)
                except Exception as exc:
                    log.error("cluster: could not give node id %s back in PostgreSQL: %r", self.node_id, exc)
            raise
        if self.beats is not None:
            self._beater = gevent.spawn(self._keep_beating)
        return self

    def _claim_in_postgres(self, quiet: bool = False) -> bool:
        """Whether PostgreSQL answered the claim (NodeIdTaken when a live instance holds the id)."""
        from records.node_beats import NodeIdHeld

        def gone(row) -> bool:
            return Instance.from_fields(row).gone()
        try:
            taken = self.beats.claim(self.node_id, self.instance, self.node_ttl_s, gone)
        except NodeIdHeld as held:
            holder = Instance.from_fields(held.holder)
            raise NodeIdTaken(
                f"node id {self.node_id} is registered in PostgreSQL by a live node ({holder.describe()}, "
                f"heartbeat {held.age:.1f} s ago): give this node another [cluster] node_id, or stop that one "
                f"(a dead one's registration expires {self.node_ttl_s:g} s after its last heartbeat)") from None
        except Exception as exc:   # PostgreSQL away: the heartbeat claims it once it answers
            (log.debug if quiet else log.warning)("cluster: could not check in PostgreSQL that node id %s is "
                                                  "free (%r)", self.node_id, exc)
            return False
        if taken is not None:
            log.warning("cluster: node id %s was held in PostgreSQL by %s, which is gone: taken over", self.node_id,
                        Instance.from_fields(taken).describe())
        return True

    def _keep_beating(self) -> None:
        """Every heartbeat_s: this node's PostgreSQL heartbeat, then the sweep of stale nodes. The
        first heartbeat that finds the id held by this process (at start, or once PostgreSQL
        answers) closes the calls an earlier process of this node id left live."""
        closed_own = False
        while True:
            try:
                if not self._claimed:   # PostgreSQL was away at start: the claim a start makes, now
                    try:                # (a dead process's row of this id is taken over, as at a start)
                        self._claimed = self._claim_in_postgres(quiet=True)
                    except NodeIdTaken as exc:   # a live twin: it keeps the id there; logged every time
                        log.error("cluster: %s", exc)
                    if not self._claimed:
                        gevent.sleep(self.heartbeat_s)
                        continue
                held = self.beats.beat(self.node_id, self.instance)
                if held and not closed_own:   # the id is this process's: what an earlier one left live is over
                    closed_own = True
                    gevent.spawn(self._close_calls_of, self.node_id, "its previous process")
                self._sweep()
            except Exception as exc:   # PostgreSQL away: nobody can tell who is dead; try again
                log.debug("cluster: PostgreSQL heartbeat failed: %r", exc)
            gevent.sleep(self.heartbeat_s)

    def _sweep(self) -> None:
        """Close the calls of the nodes whose PostgreSQL heartbeat is stale and whose Redis key is
        gone; one that still has its key lost PostgreSQL alone (its writes wait in its memory)."""
        for node_id, instance in self.beats.stale(self.node_ttl_s):
            if node_id == self.node_id:
                continue
            try:
                if self.registry.is_registered(node_id):
                    continue
            except RegistryUnavailable:
                return   # cannot tell: Redis may be away for us only
            if self.beats.take_dead(node_id, instance, self.node_ttl_s):
                # in a greenlet of its own: closing many calls must not hold this node's heartbeat back
                gevent.spawn(self._close_calls_of, node_id, "dead")

    def _dead_node(self, node_id: str, call_uuids) -> None:
        """This node pruned `node_id` from Redis (its key expired). With a shared store, its calls
        are closed if its PostgreSQL heartbeat is stale or absent too; a recent one says it lost
        Redis alone and is alive. In a greenlet of its own: the registry's keeper must keep
        heartbeating meanwhile."""
        if self.beats is not None:
            gevent.spawn(self._check_pruned, node_id)

    def _check_pruned(self, node_id: str) -> None:
        try:
            age = self.beats.age(node_id)
            if age is not None and age < self.node_ttl_s:
                log.warning("cluster: node %s has no Redis registration, but its PostgreSQL heartbeat is %.1f s "
                            "old: it lost Redis and is alive; its calls are left alone", node_id, age)
                return
            if not self.beats.take_dead(node_id, None, self.node_ttl_s):
                return   # it came back meanwhile, or another survivor took it
        except Exception as exc:   # PostgreSQL away: the sweep tries again once it answers
            log.error("node %s left Redis, and PostgreSQL could not say whether it is alive: %r", node_id, exc)
            return
        self._close_calls_of(node_id, "dead")

    def _close_calls_of(self, node_id: str, who: str) -> None:
        try:
            closed = node_death.close_calls(self.service, node_id)
        except Exception as exc:   # PostgreSQL away: the next node start or sweep closes them
            log.error("node %s (%s) left live calls, but they could not be closed: %r", node_id, who, exc)
            return
        if closed:
            log.warning("node %s (%s) died during %d call(s): hung up, their hangup webhooks queued and their "
                        "records closed: %s", node_id, who, len(closed), ", ".join(closed))

    def stop(self) -> None:
        if self._beater is not None:
            self._beater.kill()
            self._beater = None
            try:
                self.beats.leave(self.node_id, self.instance)
            except Exception as exc:   # its row goes stale; with its Redis key gone, a survivor finds no call
                log.warning("cluster: could not remove node %s's PostgreSQL heartbeat: %r", self.node_id, exc)
        self.registry.stop()

    # -- what the service tells it ---------------------------------------------------------------
    def call_started(self, uuid: str, record: dict) -> None:
        self.registry.call_started(uuid, {k: record.get(k) for k in SUMMARY_FIELDS})
        self._keep_hangup_hook(uuid)

    def call_ended(self, uuid: str) -> None:
        self.registry.call_ended(uuid)
        if self.beats is not None:
            try:
                self.service.store.forget_hangup_hook(uuid)
            except Exception:
                log.exception("call %s: could not drop its hangup hook", uuid)

    def _keep_hangup_hook(self, uuid: str) -> None:
        """What the call's hangup webhook needs, kept in PostgreSQL for whoever closes the call if
        this node dies (callfork/node_death.py)."""
        ctx = self.service.calls.get(uuid)
        if self.beats is None or ctx is None:
            return
        try:
            hook = node_death.hangup_hook(ctx)
            if hook is not None:
                self.service.store.set_hangup_hook(uuid, hook)
        except Exception:
            log.exception("call %s: could not keep its hangup hook", uuid)

    def event(self, call_uuid: str, kind: str, detail: dict) -> None:
        """A timeline event (service.record_event): those that change what this node owns."""
        if kind == "answered":
            self.registry.call_updated(call_uuid, status="in-progress", answer_time=time.time())
            self._keep_hangup_hook(call_uuid)   # its parameters and callback sequence now
        elif kind == "stream_started" and detail.get("stream_id"):
            self.registry.stream_started(detail["stream_id"], call_uuid)
        elif kind == "stream_ended" and detail.get("stream_id"):
            self.registry.stream_ended(detail["stream_id"])
        elif kind == "conference_enter" and detail.get("room") is not None:
            self.registry.room_joined(str(detail["room"]), call_uuid)
        elif kind == "conference_exit" and detail.get("room") is not None:
            self.registry.room_left(str(detail["room"]), call_uuid)

    # -- what the HTTP API reads -----------------------------------------------------------------
    def live_calls(self) -> list[dict]:
        """Every node's live calls, each with its `node`: this node's from its records, the others'
        from the records when the store is shared, else from their registry entries. Only this
        node's while Redis is away."""
        store, local = self.service.store, list(self.service.calls)
        calls = [dict(c, node=self.node_id) for c in (store.get_call(u) for u in local) if c is not None]
        try:
            entries = self.registry.cluster_calls()
        except RegistryUnavailable:
            return calls
        for entry in entries:
            if entry["node"] == self.node_id or entry["uuid"] in local or entry.get("placing"):
                continue   # (a REST call still being placed is not live yet: callfork/originate.py)
            record = store.get_call(entry["uuid"])
            calls.append(dict(record or entry, uuid=entry["uuid"], node=entry["node"]))
        return calls

    def health(self) -> tuple[dict, list]:
        """(figures, problems) for /healthz: this node's id, the nodes it sees, Redis's state."""
        state = self.registry.state()
        figures = {"node_id": self.node_id, "redis": state["redis"], "nodes": [], "registry_heals": state["heals"]}
        problems = []
        try:
            figures["nodes"] = [node.as_dict() for node in self.registry.nodes()]
        except RegistryUnavailable as exc:
            state = {"redis": "unreachable", "error": str(exc)}
        if state["redis"] != "ok":
            figures["redis"] = "unreachable"
            problems.append(f"Redis is unreachable ({state['error']}): calls go on, REST reaches this node's "
                            f"calls only")
        if state.get("held_by"):   # (Redis answered after this node's start, and another node had its id)
            figures["node_id_held_by"] = state["held_by"]
            problems.append(f"node id {self.node_id} is held in Redis by another live node ({state['held_by']}): "
                            f"this node's calls go on but are not in the registry; stop one of the two, or give "
                            f"this one another [cluster] node_id")
        return {"cluster": figures}, problems
