"""Review tests for issue 15's cluster parts (docs/cluster.md), each failing on the defect it names:
real redis-server and PostgreSQL (tests/cluster_servers.py)."""
import redis
import requests

from cluster import Registry
from cluster_servers import RedisServer
from test_cluster_registry import _live_call_on, cluster, redis_server  # noqa: F401 (fixtures)
from waiting import wait_until


def test_nodes_that_lost_redis_together_are_not_pruned_as_dead_by_the_first_one_back():
    """Redis kept running but no node reached it for longer than node_ttl_s (a network cut, a stalled
    Redis): every node key expired meanwhile while callfork:nodes still names them all. The first node
    back must not take the others for dead (removing their calls and, with PostgreSQL, closing their
    live call records) before they had a heartbeat's chance to come back too; a node that really
    died during the outage is still pruned."""
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        fast = Registry(server.url, "fast", "http://127.0.0.1:1", heartbeat_s=0.05, node_ttl_s=2).start()
        slow = Registry(server.url, "slow", "http://127.0.0.1:2", heartbeat_s=0.5, node_ttl_s=2).start()
        gone = Registry(server.url, "gone", "http://127.0.0.1:3", heartbeat_s=0.05, node_ttl_s=2).start()
        dead = []
        for registry in (fast, slow):
            registry.on_dead_node(lambda node_id, calls, me=registry.node_id: dead.append((me, node_id, calls)))
        try:
            slow.call_started("live-call", {"status": "in-progress"})
            wait_until(lambda: admin.hget("callfork:calls", "live-call") is not None, 5, "the call registered")
            gone._keeper.kill()   # dies during the outage (no goodbye)
            # the nodes lose Redis: new connections need a password they do not have, old ones are cut
            admin.config_set("requirepass", "outage")
            admin.execute_command("AUTH", "outage")
            admin.client_kill_filter(_type="normal", skipme=True)
            wait_until(lambda: fast.state()["redis"] == "unreachable" and slow.state()["redis"] == "unreachable",
                       5, "both nodes see Redis away")
            # meanwhile their registrations expire (as node_ttl_s would); callfork:nodes keeps the ids
            admin.delete("callfork:node:fast", "callfork:node:slow", "callfork:node:gone")
            admin.config_set("requirepass", "")
            wait_until(lambda: fast.state()["redis"] == "ok" and slow.state()["redis"] == "ok"
                       and admin.exists("callfork:node:slow"), 5, "both nodes back in Redis")
            assert [d for d in dead if d[1] != "gone"] == []
            assert admin.hget("callfork:calls", "live-call") is not None
            wait_until(lambda: [d[1] for d in dead] == ["gone"], 10, "the node that died is still pruned")
        finally:
            for registry in (fast, slow):
                registry.stop()


def test_a_request_without_valid_credentials_is_not_carried_to_the_owner(cluster):
    """Node B answers a request for node A's call that does not authenticate itself (401, its own),
    instead of carrying it to A's advertise_url (an address the caller may not reach otherwise) and
    telling which node runs the call (X-Callfork-Served-By)."""
    _, a, b, db = cluster
    call = _live_call_on(a, db)
    vobiz = f"{b.url}/api/v1/Account/MA_LOCAL/Call/{call.uuid}/"
    twilio = f"{b.url}/2010-04-01/Accounts/MA_LOCAL/Calls/CA{call.uuid.replace('-', '')}.json"
    for method, url, headers in (("GET", vobiz, {}), ("DELETE", vobiz, {}),
                                 ("DELETE", vobiz, {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "wrong"}),
                                 ("GET", twilio, {}), ("POST", twilio, {"Authorization": "Basic TUFfTE9DQUw6d3Jvbmc="})):
        resp = requests.request(method, url, headers=headers, data={"Status": "completed"}, timeout=20)
        assert resp.status_code == 401, (method, url, resp.status_code)
        assert "X-Callfork-Served-By" not in resp.headers, (method, url, headers)
    # with the credentials the request is carried, and the call is still live after the refusals
    resp = b.api("GET", f"/Call/{call.uuid}/")
    assert resp.status_code == 200 and resp.headers["X-Callfork-Served-By"] == "node-a"
    assert resp.json()["live"] is True
