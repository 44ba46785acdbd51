"""The live registry in Redis: this node's registration and heartbeat, and which node owns which
call, stream and conference room, for every node of the cluster to read.

Keys (all under `callfork:`; only live state, none of it persisted by us):
  callfork:node:<id>   hash: id, advertise_url, started_at, draining (0|1), heartbeat_at (epoch s),
                       live_calls, and which process holds the id (instance, host, pid, pid_start:
                       cluster/instance.py); it expires after node_ttl_s, renewed every heartbeat_s,
                       so a node whose key is gone is dead to Redis (with a shared PostgreSQL, only
                       when its PostgreSQL heartbeat has stopped too: callfork/cluster_node.py)
  callfork:nodes       set of the node ids that registered (dead ones are pruned by the survivors)
  callfork:calls       hash call uuid -> JSON {node, direction, from_number, to_number, status,
                       start_time, answer_time, answer_url}
  callfork:streams     hash stream id -> JSON {node, call_uuid}
  callfork:rooms       hash conference room -> JSON {node} (the node whose call joined it last)

What this node owns is kept here in memory too (the mirror), and that is the truth: writes go to
Redis from one greenlet (the keeper), in order, batched, never from a call's own greenlet, so a slow
or absent Redis never holds a call up. When Redis fails, the keeper logs it once, lookups answer
`RegistryUnavailable` at once (no connection attempt per request) and the keeper probes at each
heartbeat; once Redis answers and this node's key is missing (Redis restarted empty, or the node
was taken for dead), the whole mirror is written again (the registry heals within heartbeat_s).

At start the node id is claimed: a key held by another instance that is not provably gone (see
cluster/instance.py) refuses the start (`NodeIdTaken`); the claim is one script, so two nodes starting
with one id at once cannot both have it. The keeper makes the same claim before it writes the mirror
(Redis away at start, or back after an outage) and whenever the key's instance is not this one: when
another live instance holds the id, nothing of this node is written (the holder's registration and
entries are left alone), the conflict is logged once per holder and reported (`state()['held_by']`),
and the claim is made again at every heartbeat.

A node that finds a registered node whose key expired removes it and its entries; the one whose
SREM took it out of callfork:nodes tells `on_dead_node` listeners (node id, its call uuids). A node
that has just come back to Redis waits node_ttl_s before pruning: the others may have lost Redis with
it, their keys expiring meanwhile, and need a heartbeat to write them again.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from .instance import Instance, NodeIdTaken

import gevent
import gevent.event
import gevent.queue

# redis-py, imported by the first Registry (callfork/cluster_node.py makes one only with [cluster]
# redis_url): a single process never loads it (it costs a process about 20 MB)
redis = None

log = logging.getLogger("callfork.cluster")


def _load_redis():
    global redis
    if redis is None:
        import redis as module
        redis = module

KEY_PREFIX = "callfork:"
NODES = KEY_PREFIX + "nodes"
CALLS = KEY_PREFIX + "calls"
STREAMS = KEY_PREFIX + "streams"
ROOMS = KEY_PREFIX + "rooms"
OWNED = (CALLS, STREAMS, ROOMS)
TIMEOUT_S = 1.0        # one Redis command; a lookup on the HTTP path waits at most this

# HDEL only an entry this node owns (a room another node's call joined since is left alone)
# take the node key for ARGV[1] (this instance's token) unless another instance holds it, other
# than ARGV[2] (one the caller found gone); returns the holder's token when refused
_CLAIM = """
local holder = redis.call('HGET', KEYS[1], 'instance')
if holder and holder ~= '' and holder ~= ARGV[1] and holder ~= ARGV[2] then return holder end
redis.call('HSET', KEYS[1], 'instance', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return false
"""

_DELETE_MINE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and cjson.decode(v)['node'] == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


def node_key(node_id: str) -> str:
    return f"{KEY_PREFIX}node:{node_id}"


class RegistryUnavailable(Exception):
    """Redis does not answer (the message says what failed); the caller answers from local state."""


@dataclass(frozen=True)
class Node:
    id: str
    advertise_url: str
    started_at: str
    draining: bool
    heartbeat_at: float
    live_calls: int

    @classmethod
    def from_hash(cls, data: dict) -> "Node":
        return cls(id=data.get("id", ""), advertise_url=data.get("advertise_url", ""),
                   started_at=data.get("started_at", ""), draining=data.get("draining") == "1",
                   heartbeat_at=float(data.get("heartbeat_at") or 0), live_calls=int(data.get("live_calls") or 0))

    def as_dict(self) -> dict:
        return {"id": self.id, "advertise_url": self.advertise_url, "started_at": self.started_at,
                "draining": self.draining, "heartbeat_at": self.heartbeat_at, "live_calls": self.live_calls}


class Registry:
    def __init__(self, redis_url: str, node_id: str, advertise_url: str, *, heartbeat_s: float = 2.0,
                 node_ttl_s: float = 10.0, started_at: datetime | None = None, instance: Instance | None = None):
        self.url = redis_url
        self.node_id = node_id
        self.advertise_url = advertise_url.rstrip("/")
        self.heartbeat_s = heartbeat_s
        self.node_ttl_s = node_ttl_s
        self.started_at = (started_at or datetime.now(timezone.utc)).isoformat()
        self.instance = instance or Instance.this_process()
        # no retries inside redis-py: its default retries with a backoff of seconds, which a
        # lookup on the HTTP path must not wait for; the keeper's heartbeat is the retry
        _load_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=TIMEOUT_S,
                                          socket_connect_timeout=TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                                          health_check_interval=0)
        self._delete_mine = self.redis.register_script(_DELETE_MINE)
        self._claim_script = self.redis.register_script(_CLAIM)
        self.draining = False
        self.reachable = False
        self.error = "not connected yet"
        self.heals = 0                      # full re-registrations after an outage
        self.held_by = ""                   # another live instance holding this node id: who (else "")
        self._holder = ""                   # its token (its conflict is logged once)
        self._calls: dict[str, dict] = {}   # the mirror: what this node owns
        self._streams: dict[str, str] = {}  # stream id -> call uuid
        self._rooms: dict[str, set] = {}    # room -> this node's call uuids in it
        self._ops = gevent.queue.Queue()
        self._synced = False
        self._ever_synced = False
        self._prune_from = 0.0              # monotonic: no pruning before (see _sync)
        self._stopping = False
        self._keeper = None
        self._dead_listeners = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "Registry":
        """Claim the node id (NodeIdTaken when another live instance holds it), register (a first
        heartbeat now: Redis's state is known when this returns, and a Redis that is away does not
        stop the node), then keep the registration alive."""
        try:
            refused = self._claim()
        except redis.RedisError as exc:   # cannot tell: the keeper claims it once Redis answers
            log.warning("cluster: could not check in Redis that node id %s is free (%r)", self.node_id, exc)
        else:
            if refused:
                raise NodeIdTaken(
                    f"node id {self.node_id} is registered in Redis by a live node ({self._held_by(*refused)}): "
                    f"give this node another [cluster] node_id, or stop that one (a dead one's registration "
                    f"expires {self.node_ttl_s:g} s after its last heartbeat)")
        self._beat()
        self._keeper = gevent.spawn(self._keep)
        return self

    def stop(self) -> None:
        """Leave the cluster: what is queued is written, then this node's key and entries go."""
        if self._keeper is None:
            return
        self._stopping = True
        self._ops.put(None)
        self._keeper.join(timeout=2 * TIMEOUT_S + 1)
        self._keeper.kill()
        self._keeper = None
        try:
            self._deregister()
        finally:
            self.redis.close()   # its pool's connections

    def _deregister(self) -> None:
        if not self.reachable or not self._synced:
            return   # its key expires by itself (or is another instance's); the survivors prune its entries
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(node_key(self.node_id))
            pipe.srem(NODES, self.node_id)
            for key, fields in ((CALLS, list(self._calls)), (STREAMS, list(self._streams)),
                                (ROOMS, list(self._rooms))):
                for field in fields:
                    self._delete_mine(keys=[key], args=[field, self.node_id], client=pipe)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("cluster: could not deregister node %s from Redis: %r", self.node_id, exc)

    def _claim(self) -> tuple[Instance, dict] | None:
        """Take this node id's key unless another instance holds it and may be alive: None when
        this instance holds it now, else (the holder, its registration). RedisError when Redis
        does not answer."""
        key = node_key(self.node_id)
        found = self.redis.hgetall(key)
        holder = Instance.from_fields(found)
        gone = holder.token if holder.token and holder.token != self.instance.token and holder.gone() else ""
        if self._claim_script(keys=[key], args=[self.instance.token, gone, int(self.node_ttl_s * 1000)]):
            return holder, found
        if gone:
            log.warning("cluster: node id %s was held in Redis by %s, which is gone: taken over", self.node_id,
                        holder.describe())
        return None

    def _held_by(self, holder: Instance, found: dict) -> str:
        age = time.time() - float(found.get("heartbeat_at") or 0) if found.get("heartbeat_at") else None
        return holder.describe() + (f", heartbeat {age:.1f} s ago" if age is not None else "")

    def is_registered(self, node_id: str) -> bool:
        """Whether `node_id` has a live registration (key) in Redis; RegistryUnavailable if Redis
        does not answer."""
        with self._asking():
            return bool(self.redis.exists(node_key(node_id)))

    def on_dead_node(self, listener) -> None:
        """`listener(node_id, call_uuids)` runs (in the keeper) when this node pruned a dead node."""
        self._dead_listeners.append(listener)

    # -- what this node owns (called from call greenlets: never blocks) --------------------------
    def call_started(self, uuid: str, summary: dict) -> None:
        self._calls[uuid] = dict(summary, node=self.node_id)
        self._ops.put(("set", CALLS, uuid, self._calls[uuid]))

    def call_updated(self, uuid: str, **fields) -> None:
        if uuid in self._calls:
            self._calls[uuid].update(fields)
            self._ops.put(("set", CALLS, uuid, self._calls[uuid]))

    def call_ended(self, uuid: str) -> None:
        if self._calls.pop(uuid, None) is not None:
            self._ops.put(("del", CALLS, uuid))
        for stream_id in [s for s, c in self._streams.items() if c == uuid]:
            self.stream_ended(stream_id)
        for room in [r for r, members in self._rooms.items() if uuid in members]:
            self.room_left(room, uuid)

    def stream_started(self, stream_id: str, call_uuid: str) -> None:
        self._streams[stream_id] = call_uuid
        self._ops.put(("set", STREAMS, stream_id, {"node": self.node_id, "call_uuid": call_uuid}))

    def stream_ended(self, stream_id: str) -> None:
        if self._streams.pop(stream_id, None) is not None:
            self._ops.put(("del", STREAMS, stream_id))

    def room_joined(self, room: str, call_uuid: str) -> None:
        self._rooms.setdefault(room, set()).add(call_uuid)
        self._ops.put(("set", ROOMS, room, {"node": self.node_id}))

    def room_left(self, room: str, call_uuid: str) -> None:
        members = self._rooms.get(room)
        if members is None:
            return
        members.discard(call_uuid)
        if not members:
            del self._rooms[room]
            self._ops.put(("del", ROOMS, room))

    def set_draining(self, draining: bool = True) -> None:
        self.draining = draining
        self._ops.put(("node",))

    def owns_room(self, room: str) -> bool:
        return room in self._rooms

    # -- what the cluster holds (called from HTTP greenlets) -------------------------------------
    def owner_of_call(self, uuid: str) -> tuple[str, Node | None] | None:
        """(node id, its Node, or None when that node is dead) of a call, or None if no node has it."""
        return self._owner(CALLS, uuid)

    def owner_of_stream(self, stream_id: str):
        return self._owner(STREAMS, stream_id)

    def owner_of_room(self, room: str):
        return self._owner(ROOMS, room)

    def nodes(self) -> list[Node]:
        """The live nodes (this one included once registered), by id."""
        with self._asking():
            ids = sorted(self.redis.smembers(NODES))
            pipe = self.redis.pipeline(transaction=False)
            for node_id in ids:
                pipe.hgetall(node_key(node_id))
            return [Node.from_hash(data) for data in pipe.execute() if data]

    def cluster_calls(self) -> list[dict]:
        """Every live node's calls: {uuid, node, and the summary its owner wrote}."""
        with self._asking():
            alive = {node.id for node in self.nodes()}
            out = []
            for uuid, raw in self.redis.hgetall(CALLS).items():
                entry = _decode(raw)
                if entry.get("node") in alive:
                    out.append(dict(entry, uuid=uuid))
            return out

    def cluster_rooms(self) -> list[dict]:
        """Every live node's conference rooms: {room, node}."""
        with self._asking():
            alive = {node.id for node in self.nodes()}
            entries = ((room, _decode(raw)) for room, raw in self.redis.hgetall(ROOMS).items())
            return [dict(entry, room=room) for room, entry in entries if entry.get("node") in alive]

    def state(self) -> dict:
        return {"redis": "ok" if self.reachable else "unreachable", "error": "" if self.reachable else self.error,
                "heals": self.heals, "held_by": self.held_by}

    # -- the keeper ------------------------------------------------------------------------------
    def _keep(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_s
        while True:
            ops = []
            try:
                ops.append(self._ops.get(timeout=max(0.0, next_beat - time.monotonic())))
                while True:
                    ops.append(self._ops.get_nowait())
            except gevent.queue.Empty:
                pass
            stop = None in ops
            ops = [op for op in ops if op is not None]
            if ops and self._synced:   # (unsynced: the next sync writes the mirror, which has them)
                try:
                    self._apply(ops)
                except redis.RedisError as exc:
                    self._down(exc)
            if stop:
                return
            if time.monotonic() >= next_beat:
                self._beat()
                next_beat = time.monotonic() + self.heartbeat_s

    def _apply(self, ops) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for op in ops:
            if op[0] == "set":
                pipe.hset(op[1], op[2], json.dumps(op[3]))
            elif op[0] == "del":
                self._delete_mine(keys=[op[1]], args=[op[2], self.node_id], client=pipe)
            elif op[0] == "node":
                pipe.hset(node_key(self.node_id), mapping=self._registration())
        pipe.execute()

    def _registration(self) -> dict:
        return {"id": self.node_id, "advertise_url": self.advertise_url, "started_at": self.started_at,
                "draining": "1" if self.draining else "0", "heartbeat_at": repr(time.time()),
                "live_calls": str(len(self._calls)), **self.instance.fields()}

    def _beat(self) -> None:
        try:
            if not self._synced or self.redis.hget(node_key(self.node_id), "instance") != self.instance.token:
                # not registered yet (Redis away at start), Redis restarted empty, this node taken
                # for dead, or another instance took the id meanwhile: claim it as a start does
                refused = self._claim()
                if refused:
                    self._refused(*refused)
                    return
                self._sync()
            else:
                pipe = self.redis.pipeline(transaction=False)
                pipe.hset(node_key(self.node_id), mapping=self._registration())
                pipe.pexpire(node_key(self.node_id), int(self.node_ttl_s * 1000))
                pipe.sadd(NODES, self.node_id)
                pipe.execute()
            if time.monotonic() >= self._prune_from:
                self._prune_dead()
        except redis.RedisError as exc:
            self._down(exc)

    def _sync(self) -> None:
        """Write the whole mirror (first registration, or healing), and drop entries a previous
        run of this node id left behind."""
        wanted = {CALLS: dict(self._calls),
                  STREAMS: {s: {"node": self.node_id, "call_uuid": c} for s, c in self._streams.items()},
                  ROOMS: {r: {"node": self.node_id} for r in self._rooms}}
        stale = {key: [f for f, raw in self.redis.hgetall(key).items()
                       if _decode(raw).get("node") == self.node_id and f not in wanted[key]] for key in OWNED}
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(node_key(self.node_id), mapping=self._registration())
        pipe.pexpire(node_key(self.node_id), int(self.node_ttl_s * 1000))
        pipe.sadd(NODES, self.node_id)
        for key in OWNED:
            if stale[key]:
                pipe.hdel(key, *stale[key])
            if wanted[key]:
                pipe.hset(key, mapping={f: json.dumps(v) for f, v in wanted[key].items()})
        pipe.execute()
        healed = self._ever_synced
        self._synced = self._ever_synced = True
        if healed:
            self.heals += 1
            # the others may have lost Redis with us and not be back yet (their keys expired
            # meanwhile): give them a node_ttl_s to write theirs before taking any for dead
            self._prune_from = time.monotonic() + self.node_ttl_s
        if not self.reachable or self.held_by:
            log.log(logging.WARNING if healed or self.held_by else logging.INFO,
                    "cluster: node %s %s Redis at %s%s: %d calls, %d streams, %d rooms", self.node_id,
                    "re-registered in" if healed else "registered in", self.url,
                    f" (its id was held by {self.held_by} until now)" if self.held_by else "",
                    len(wanted[CALLS]), len(wanted[STREAMS]), len(wanted[ROOMS]))
        self.reachable, self.error, self.held_by, self._holder = True, "", "", ""

    def _refused(self, holder: Instance, found: dict) -> None:
        """Another live instance holds this node id: nothing of this node is written (its calls go
        on, in the mirror), its registration and entries are the holder's; claimed again at every
        heartbeat (the holder may stop, or be found gone)."""
        self._synced = False
        self.reachable, self.error = True, ""   # Redis answers: the other nodes' entries can be read
        self.held_by = self._held_by(holder, found)
        if holder.token != self._holder:
            self._holder = holder.token
            log.error("cluster: node id %s is held in Redis by another live node (%s), not by this one (%s): "
                      "this node's registration, calls, streams and rooms are not written there (its calls go "
                      "on; REST reaches them only when sent to this node); it claims the id again at every "
                      "heartbeat: stop one of the two, or give this one another [cluster] node_id",
                      self.node_id, self.held_by, self.instance.describe())

    def _prune_dead(self) -> None:
        ids = sorted(self.redis.smembers(NODES))
        pipe = self.redis.pipeline(transaction=False)
        for node_id in ids:
            pipe.exists(node_key(node_id))
        dead = [node_id for node_id, alive in zip(ids, pipe.execute()) if not alive]
        for node_id in dead:
            if not self.redis.srem(NODES, node_id):
                continue   # another node took it
            calls = []
            for key in OWNED:
                fields = [f for f, raw in self.redis.hgetall(key).items() if _decode(raw).get("node") == node_id]
                if fields:
                    self.redis.hdel(key, *fields)
                if key == CALLS:
                    calls = fields
            log.warning("cluster: node %s is dead (no heartbeat for %s s): %d of its calls removed from "
                        "the registry", node_id, self.node_ttl_s, len(calls))
            for listener in self._dead_listeners:
                try:
                    listener(node_id, calls)
                except Exception:
                    log.exception("cluster: a listener failed on dead node %s", node_id)

    def _down(self, exc: Exception) -> None:
        self._synced = False
        if self.reachable or self.error == "not connected yet":
            log.error("cluster: Redis at %s is unreachable (%r): calls go on, REST answers this node's "
                      "calls only; the registry is written again when Redis is back", self.url, exc)
        self.reachable, self.error = False, repr(exc)

    def _owner(self, key: str, field: str):
        with self._asking():
            raw = self.redis.hget(key, field)
            if raw is None:
                return None
            node_id = _decode(raw).get("node", "")
            data = self.redis.hgetall(node_key(node_id)) if node_id else {}
            return node_id, (Node.from_hash(data) if data else None)

    def _asking(self):
        return _Asking(self)


class _Asking:
    """A lookup: refused at once while Redis is known to be away; a failure marks it away."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def __enter__(self):
        if not self.registry.reachable:
            raise RegistryUnavailable(self.registry.error)

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, redis.RedisError):
            self.registry._down(exc)
            raise RegistryUnavailable(repr(exc)) from exc
        return False


def _decode(raw) -> dict:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
