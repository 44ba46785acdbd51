"""This service as a node of a cluster ([cluster] redis_url): its id and advertised URL, the live
registry (cluster/registry.py) started and stopped with it, what the service's calls and timeline
events change in what it owns, and what the HTTP API reads from the cluster (the live calls of
every node, /healthz's cluster figures). Without [cluster] redis_url the service has none
(`service.cluster` is None) and nothing here runs.
"""
from __future__ import annotations

import logging
import os
import socket
import time

import gevent

from cluster import Registry, RegistryUnavailable

log = logging.getLogger("callfork.cluster")

WILDCARDS = ("", "0.0.0.0", "::", "[::]")
# the record fields a call's registry entry carries, so that other nodes can list it
SUMMARY_FIELDS = ("direction", "from_number", "to_number", "status", "start_time", "answer_time", "answer_url")


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
        self.registry = Registry(cfg.redis_url, self.node_id, advertise_url_for(service.config),
                                 heartbeat_s=cfg.heartbeat_s, node_ttl_s=cfg.node_ttl_s,
                                 started_at=service.started_at)

    def start(self) -> "ClusterNode":
        self.registry.on_dead_node(self._dead_node)
        self.registry.start()
        return self

    def _dead_node(self, node_id: str, call_uuids) -> None:
        """This node pruned `node_id` (its registration expired): in a shared store its live call
        records are closed (a node with its own SQLite closes them itself when it starts again). In a
        greenlet of its own: the registry's keeper must keep heartbeating meanwhile."""
        close = getattr(self.service.store, "close_calls_of", None)
        if close is not None:
            gevent.spawn(self._close_calls_of, close, node_id)

    @staticmethod
    def _close_calls_of(close, node_id: str) -> None:
        try:
            closed = close(node_id, f"node {node_id} died during the call")
        except Exception as exc:   # PostgreSQL away: the next node start or prune closes them
            log.error("node %s died, but its calls' records could not be closed: %r", node_id, exc)
            return
        if closed:
            log.warning("node %s died: closed the records of its %d live call(s): %s", node_id, len(closed),
                        ", ".join(closed))

    def stop(self) -> None:
        self.registry.stop()

    # -- what the service tells it ---------------------------------------------------------------
    def call_started(self, uuid: str, record: dict) -> None:
        self.registry.call_started(uuid, {k: record.get(k) for k in SUMMARY_FIELDS})

    def call_ended(self, uuid: str) -> None:
        self.registry.call_ended(uuid)

    def event(self, call_uuid: str, kind: str, detail: dict) -> None:
        """A timeline event (service.record_event): those that change what this node owns."""
        if kind == "answered":
            self.registry.call_updated(call_uuid, status="in-progress", answer_time=time.time())
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
        return {"cluster": figures}, problems
