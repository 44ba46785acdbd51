"""A node that reaches Redis only after its start claims its node id then, as a start does (issue 15;
docs/cluster.md "One node per id"): real `callfork serve` processes on simulators, a real Redis
(tests/cluster_servers.py), node A reaching it through a TCP proxy the test holds cut until a twin
B with A's node id has registered.

- A does not overwrite B's registration nor drop B's call entries; it logs the conflict once, naming
  both processes, keeps its own call up, and its /healthz says degraded with the reason.
- Once B is killed (-9: its key stays until it expires), A finds it gone (this host, its pid no
  longer runs) and takes the id at once: its registration and its call are in Redis, B's call entry
  is gone, its /healthz is ok.
"""
import redis

from cluster import registry
from cluster_servers import RedisServer
from harness import AppServer
from serve_support import ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import CallScript, Simulator
from test_cluster_node_death import CuttableProxy
from waiting import wait_until

LONG_CALL = "<Response><Speak>Hello.</Speak><Wait length=\"60\"/></Response>"
# a node_ttl_s long enough that a takeover within 5 s of the twin's death is the gone check's, not the
# expiry of the twin's key
NODE_ENV = {"CALLFORK_CLUSTER_HEARTBEAT_S": "0.3", "CALLFORK_CLUSTER_NODE_TTL_S": "10",
            "CALLFORK_CLUSTER_NODE_ID": "node-a"}
KEY = registry.node_key("node-a")


def _node(tmp, numbers, redis_url):
    tmp.mkdir()
    ports = serve_ports()
    config = write_serve_config(tmp / "callfork.toml", ports, numbers)
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    return sim, ServeProcess(config, ports["http"], env=dict(NODE_ENV, CALLFORK_CLUSTER_REDIS_URL=redis_url))


def test_a_node_that_reaches_redis_late_does_not_overwrite_a_live_twin_and_takes_the_id_once_it_stops(tmp_path):
    app = AppServer().start()
    answers = app.document("/answer", LONG_CALL)
    numbers = number_table(answers)
    with RedisServer() as redis_server:
        db = redis.Redis.from_url(redis_server.url, decode_responses=True)
        proxy = CuttableProxy(("127.0.0.1", redis_server.port))
        proxy.cut()
        sim_a, a = _node(tmp_path / "a", numbers, f"redis://127.0.0.1:{proxy.port}/0")
        sim_b, b = _node(tmp_path / "b", numbers, redis_server.url)
        try:
            try:   # (its /healthz says degraded while Redis is away: not 200)
                a.start(timeout=3)
            except AssertionError:
                wait_until(a.answering, 15, "node A answering /healthz", interval=0.1)
            assert a.health()["cluster"]["redis"] == "unreachable"
            call_a = sim_a.place_call(CallScript(to="1000", hangup_after=120))
            wait_until(lambda: any(r.path == "/answer" for r in app.requests), 15, "A's call reached the app", interval=0.1)

            b.start()   # Redis has no key for node-a: the twin takes the id
            call_b = sim_b.place_call(CallScript(to="1000", hangup_after=120))
            wait_until(lambda: db.hexists(registry.CALLS, call_b.uuid), 15, "B's call in the registry", interval=0.1)
            twin = db.hgetall(KEY)
            assert twin["pid"] == str(b.proc.pid), twin

            proxy.restore()
            wait_until(lambda: a.health()["cluster"]["redis"] == "ok", 15, "node A reached Redis", interval=0.1)
            # a few of A's heartbeats (0.3 s) later: B's heartbeats are B's own, nothing of A's is written
            beat = float(db.hget(KEY, "heartbeat_at"))
            wait_until(lambda: float(db.hget(KEY, "heartbeat_at") or 0) > beat + 1.0, 15, "B's heartbeats go on",
                       interval=0.1)
            assert db.hget(KEY, "instance") == twin["instance"], (db.hgetall(KEY), a.output())
            assert db.hexists(registry.CALLS, call_b.uuid), a.output()
            assert not db.hexists(registry.CALLS, call_a.uuid), a.output()
            health = a.health()
            assert health["status"] == "degraded", health
            reason = [p for p in health["problems"] if "node id node-a" in p]
            assert reason and f"pid {b.proc.pid}" in reason[0], health
            conflict = [line for line in a.output().splitlines() if "node id node-a is held in Redis by" in line]
            assert len(conflict) == 1, a.output()   # once, not at every heartbeat
            assert f"pid {b.proc.pid}" in conflict[0] and f"pid {a.proc.pid}" in conflict[0], conflict
            assert not sim_a.get_channel(call_a.uuid).hungup

            b.kill9()   # the twin dies, its key left behind: A takes the id, as a start would
            wait_until(lambda: db.hget(KEY, "pid") == str(a.proc.pid), 5, "node A holds node-a in Redis",
                       interval=0.1)
            assert "was held in Redis by pid %d" % b.proc.pid in a.output() and "which is gone: taken over" in \
                a.output(), a.output()
            wait_until(lambda: db.hexists(registry.CALLS, call_a.uuid), 15, "A's call in the registry", interval=0.1)
            assert not db.hexists(registry.CALLS, call_b.uuid)
            wait_until(lambda: a.health()["status"] == "ok", 15, "node A healthy", interval=0.1)
            assert not sim_a.get_channel(call_a.uuid).hungup
        finally:
            b.stop()
            a.stop()
            proxy.stop()
            sim_a.stop()
            sim_b.stop()
            app.stop()
