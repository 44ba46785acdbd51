"""The live registry in Redis and REST requests carried to the owning node (issue 15; docs/cluster.md):
a real redis-server (tests/cluster_servers.py) and two real `callfork serve` processes, node-a and
node-b, each with its own simulator and SQLite, sharing Redis. A REST hang-up, transfer and stream
stop (Vobiz and Twilio paths) sent to node B for a call on node A reach it; either node lists the
whole cluster's live calls (API and `callfork calls`); Redis restarted mid-call: the call goes on,
/healthz says degraded, and once Redis is back the registry heals and REST through node B works
again; a carried request is never carried twice, and one whose owner is dead or silent is answered
404 as an unknown call. The registry alone: registration, heartbeat expiry, a dead node pruned."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from cluster import Registry
from cluster_servers import RedisServer
from harness import AppServer, free_port
from serve_support import ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import CallScript, Simulator
from waiting import wait_until
from wsapp import AppServer as WsApp

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "test-token"}
LONG_CALL = "<Response><Speak>Hello.</Speak><Wait length=\"60\"/></Response>"


class Node:
    """One `callfork serve` in the cluster, with its own simulator (its FreeSWITCH)."""

    def __init__(self, tmp: Path, name: str, redis_url: str, answer_url: str):
        tmp.mkdir()
        self.name = name
        self.ports = serve_ports()
        config = write_serve_config(tmp / "callfork.toml", self.ports, number_table(answer_url))
        self.sim = Simulator(esl=("127.0.0.1", self.ports["esl"]),
                             socket_target=("127.0.0.1", self.ports["outbound"])).start()
        self.serve = ServeProcess(config, self.ports["http"], env={
            "CALLFORK_CLUSTER_REDIS_URL": redis_url, "CALLFORK_CLUSTER_NODE_ID": name,
            "CALLFORK_CLUSTER_HEARTBEAT_S": "0.3", "CALLFORK_CLUSTER_NODE_TTL_S": "2"})
        self.url = self.serve.http_url

    def start(self) -> "Node":
        self.serve.start()
        return self

    def api(self, method, path, **kw):
        headers = dict(AUTH, **kw.pop("headers", {}))
        return requests.request(method, f"{self.url}/api/v1/Account/MA_LOCAL{path}", headers=headers,
                                timeout=20, **kw)

    def call(self):
        return self.sim.place_call(CallScript(to="1000", hangup_after=60))

    def stop(self):
        self.serve.stop()
        if self.sim is not None:
            self.sim.stop()
            self.sim = None


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def cluster(tmp_path, redis_server):
    app = AppServer().start()
    answer = app.document("/answer", LONG_CALL)
    nodes = [Node(tmp_path / name, name, redis_server.url, answer) for name in ("node-a", "node-b")]
    try:
        for node in nodes:
            node.start()
        yield app, nodes[0], nodes[1], redis.Redis.from_url(redis_server.url, decode_responses=True)
    finally:
        for node in nodes:
            node.stop()
        app.stop()


def _owned(db, uuid, node="node-a"):
    raw = db.hget("callfork:calls", uuid)
    return raw is not None and json.loads(raw)["node"] == node


def _live_call_on(node, db):
    """A call placed on `node`, live there and in the registry."""
    call = node.call()
    wait_until(lambda: _owned(db, call.uuid, node.name), 10, "the call in the registry", interval=0.05)
    return call


def test_rest_sent_to_node_b_reaches_the_calls_on_node_a(cluster):
    app, a, b, db = cluster
    app.document("/transferred", "<Response><Hangup/></Response>")
    ws = WsApp().start()
    try:
        hung, moved, streamed = (_live_call_on(a, db) for _ in range(3))

        # either node lists the whole cluster's live calls, each with its node
        for node in (a, b):
            listing = node.api("GET", "/Call/").json()["objects"]
            assert sorted((c["uuid"], c["node"], c["live"]) for c in listing) == sorted(
                (c.uuid, "node-a", True) for c in (hung, moved, streamed))
        extra = _live_call_on(b, db)
        cli = subprocess.run([sys.executable, "-m", "callfork.cli", "calls", "--json", "--url", b.url],
                             env=dict(os.environ, PYTHONPATH=str(ROOT), CALLFORK_SERVER_AUTH_TOKEN="test-token"),
                             capture_output=True, text=True, timeout=30)
        assert cli.returncode == 0, cli.stderr
        assert {(c["uuid"], c["node"]) for c in json.loads(cli.stdout)["objects"]} == {
            (hung.uuid, "node-a"), (moved.uuid, "node-a"), (streamed.uuid, "node-a"), (extra.uuid, "node-b")}
        table = subprocess.run([sys.executable, "-m", "callfork.cli", "calls", "--url", a.url],
                               env=dict(os.environ, PYTHONPATH=str(ROOT), CALLFORK_SERVER_AUTH_TOKEN="test-token",
                                        COLUMNS="250"), capture_output=True, text=True, timeout=30)
        assert table.returncode == 0 and "node-b" in table.stdout and "node" in table.stdout, table.stderr

        # a call's own record, read through B
        got = b.api("GET", f"/Call/{hung.uuid}/")
        assert got.status_code == 200 and got.json()["uuid"] == hung.uuid and got.json()["live"] is True
        assert got.headers["X-Callfork-Served-By"] == "node-a"

        # hang-up through B: the call on A really ends, by the API
        resp = b.api("DELETE", f"/Call/{hung.uuid}/")
        assert resp.status_code == 204 and resp.headers["X-Callfork-Served-By"] == "node-a"
        assert hung.wait(10)["answered"] is True
        wait_until(lambda: not db.hexists("callfork:calls", hung.uuid), 5, "the ended call out of the registry")
        assert b.api("DELETE", f"/Call/{hung.uuid}/").status_code == 404   # ended: not carried, unknown

        # transfer through B: A fetches the new document for that call, which hangs it up
        resp = b.api("POST", f"/Call/{moved.uuid}/", json={"aleg_url": app.url("/transferred")})
        assert resp.status_code == 202 and resp.json()["call_uuid"] == moved.uuid
        fetched = app.wait_path("/transferred", timeout=10)[0]
        assert fetched.form["CallUUID"] == moved.uuid
        moved.wait(10)

        # a stream started and stopped through B runs on A's call, which goes on
        resp = b.api("POST", f"/Call/{streamed.uuid}/Stream/", json={"service_url": ws.url})
        assert resp.status_code == 202, resp.text
        stream_id = resp.json()["stream_id"]
        conn = ws.wait_connection(10)
        conn.wait_for(lambda c: any(json.loads(m).get("event") == "start" for m in c.texts()), 5)
        wait_until(lambda: json.loads(db.hget("callfork:streams", stream_id) or "{}").get("node") == "node-a",
                   5, "the stream in the registry", interval=0.05)
        assert b.api("DELETE", f"/Call/{streamed.uuid}/Stream/{stream_id}/").status_code == 204
        assert conn.closed.wait(5)
        wait_until(lambda: not db.hexists("callfork:streams", stream_id), 5, "the stream out of the registry")
        listed = b.api("GET", f"/Call/{streamed.uuid}/Stream/{stream_id}/")
        wait_until(lambda: b.api("GET", f"/Call/{streamed.uuid}/Stream/{stream_id}/").json()["status"]
                   == "completed", 5, "the stream record completed")
        assert listed.headers["X-Callfork-Served-By"] == "node-a"
        assert not streamed.channel.gone.is_set()

        # Twilio's update through B, with HTTP Basic: Status=completed hangs A's call up
        sid = "CA" + streamed.uuid.replace("-", "")
        resp = requests.post(f"{b.url}/2010-04-01/Accounts/MA_LOCAL/Calls/{sid}.json", data={"Status": "completed"},
                             auth=("MA_LOCAL", "test-token"), timeout=20)
        assert resp.status_code == 200, resp.text
        assert resp.json()["sid"] == sid and resp.headers["X-Callfork-Served-By"] == "node-a"
        streamed.wait(10)
        # wrong credentials are refused by the owner, as they would be at home
        bad = requests.post(f"{b.url}/2010-04-01/Accounts/MA_LOCAL/Calls/{'CA' + extra.uuid.replace('-', '')}.json",
                            data={"Status": "completed"}, auth=("MA_LOCAL", "wrong"), timeout=20)
        assert bad.status_code == 401
        wait_until(lambda: [c["uuid"] for c in a.api("GET", "/Call/").json()["objects"]] == [extra.uuid], 5,
                   "only B's call left in the cluster listing")
    finally:
        ws.stop()


def test_healthz_shows_the_node_and_the_nodes_it_sees(cluster):
    _, a, b, _ = cluster
    body = requests.get(f"{b.url}/healthz", timeout=5).json()
    assert body["status"] == "ok"
    assert body["cluster"]["node_id"] == "node-b" and body["cluster"]["redis"] == "ok"
    nodes = body["cluster"]["nodes"]
    assert [n["id"] for n in nodes] == ["node-a", "node-b"]
    assert nodes[0]["advertise_url"] == a.url and nodes[1]["advertise_url"] == b.url
    assert not any(n["draining"] for n in nodes)
    a.stop()   # a node that leaves deregisters: the others stop seeing it at once
    wait_until(lambda: [n["id"] for n in requests.get(f"{b.url}/healthz", timeout=5).json()["cluster"]["nodes"]]
               == ["node-b"], 5, "node-a gone from node-b's view")


def test_redis_restarted_mid_call_the_call_goes_on_and_the_registry_heals(cluster, redis_server):
    _, a, b, db = cluster
    call = _live_call_on(a, db)
    assert b.api("GET", f"/Call/{call.uuid}/").headers.get("X-Callfork-Served-By") == "node-a"

    redis_server.stop()
    wait_until(lambda: requests.get(f"{a.url}/healthz", timeout=5).status_code == 503, 5, "node-a degraded")
    health = requests.get(f"{a.url}/healthz", timeout=5).json()
    assert health["cluster"]["redis"] == "unreachable" and "Redis is unreachable" in health["problems"][0]
    # the call goes on and A still answers for it; B cannot find it (answered as an unknown call)
    local = a.api("GET", f"/Call/{call.uuid}/")
    assert local.status_code == 200 and local.json()["live"] is True
    assert [c["uuid"] for c in a.api("GET", "/Call/").json()["objects"]] == [call.uuid]
    assert b.api("DELETE", f"/Call/{call.uuid}/").status_code == 404
    assert not call.channel.gone.is_set()

    redis_server.start()   # empty: nothing was persisted
    wait_until(lambda: _owned(db, call.uuid), 10, "the registry healed", interval=0.05)
    for node in (a, b):   # each finds Redis back at its next heartbeat
        wait_until(lambda: requests.get(f"{node.url}/healthz", timeout=5).status_code == 200, 5, "healthy again")
    assert requests.get(f"{a.url}/healthz", timeout=5).json()["cluster"]["registry_heals"] >= 1
    assert {c["uuid"] for c in b.api("GET", "/Call/").json()["objects"]} == {call.uuid}
    resp = b.api("DELETE", f"/Call/{call.uuid}/")
    assert resp.status_code == 204 and resp.headers["X-Callfork-Served-By"] == "node-a"
    assert call.wait(10)["answered"] is True
    assert "Redis at" in a.serve.output() and "re-registered" in a.serve.output()


def test_a_carried_request_is_never_carried_again_and_a_dead_owner_is_a_404(cluster):
    _, a, b, db = cluster
    ghost_call = "11111111-2222-3333-4444-555555555555"
    # the registry (wrongly) gives the call to node-b: A carries it there once, B answers it itself
    db.hset("callfork:calls", ghost_call, json.dumps({"node": "node-b"}))
    resp = a.api("DELETE", f"/Call/{ghost_call}/")
    assert resp.status_code == 404 and resp.headers["X-Callfork-Served-By"] == "node-b"
    # a request that was carried already is answered where it lands, whoever the registry names
    db.hset("callfork:calls", ghost_call, json.dumps({"node": "node-a"}))
    resp = b.api("DELETE", f"/Call/{ghost_call}/", headers={"X-Callfork-Forwarded-By": "node-a"})
    assert resp.status_code == 404 and "X-Callfork-Served-By" not in resp.headers
    assert b.api("DELETE", f"/Call/{ghost_call}/").headers["X-Callfork-Served-By"] == "node-a"

    # an owner whose registration expired (dead), or that does not answer: 404 here, logged
    db.hset("callfork:calls", ghost_call, json.dumps({"node": "gone"}))
    resp = b.api("POST", f"/Call/{ghost_call}/Play/", json={"urls": "http://127.0.0.1/a.wav"})
    assert resp.status_code == 404 and "X-Callfork-Served-By" not in resp.headers
    closed = free_port()
    db.hset("callfork:node:silent", mapping={"id": "silent", "advertise_url": f"http://127.0.0.1:{closed}"})
    db.expire("callfork:node:silent", 60)
    db.hset("callfork:calls", ghost_call, json.dumps({"node": "silent"}))
    resp = b.api("GET", f"/Call/{ghost_call}/")
    assert resp.status_code == 404 and resp.json()["error"] == "call not found"
    wait_until(lambda: "node gone is dead" in b.serve.output() and "node silent at" in b.serve.output(), 5,
               "both logged")

    # a conference room owned by another node is carried too
    db.hset("callfork:rooms", "sales", json.dumps({"node": "node-a"}))
    resp = b.api("GET", "/Conference/sales/")
    assert resp.status_code == 404 and resp.headers["X-Callfork-Served-By"] == "node-a"


def test_the_registry_alone_registers_expires_and_prunes_a_dead_node(redis_server):
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    one = Registry(redis_server.url, "one", "http://127.0.0.1:1", heartbeat_s=0.1, node_ttl_s=0.5).start()
    two = Registry(redis_server.url, "two", "http://127.0.0.1:2", heartbeat_s=0.1, node_ttl_s=0.5).start()
    dead = []
    two.on_dead_node(lambda node_id, calls: dead.append((node_id, calls)))
    try:
        one.call_started("c1", {"status": "ringing"})
        one.stream_started("s1", "c1")
        one.room_joined("room", "c1")
        wait_until(lambda: db.hget("callfork:streams", "s1") is not None and db.hget("callfork:rooms", "room"),
                   3, "written")
        assert two.owner_of_call("c1")[0] == "one" and two.owner_of_call("c1")[1].advertise_url == "http://127.0.0.1:1"
        assert two.owner_of_room("room")[0] == "one" and two.owner_of_stream("s1")[0] == "one"
        two.room_joined("room", "c2")     # a call of two's joins the room after: two owns it
        wait_until(lambda: one.owner_of_room("room")[0] == "two", 3, "the room is two's")
        one.call_updated("c1", status="in-progress")
        wait_until(lambda: [c["status"] for c in two.cluster_calls()] == ["in-progress"], 3, "updated")
        one.room_left("room", "c1")       # not one's any more: its leaving leaves two's entry
        one.call_updated("c1", status="completed")   # written after the leave, in order
        wait_until(lambda: [c["status"] for c in two.cluster_calls()] == ["completed"], 3, "updated again")
        assert one.owner_of_room("room")[0] == "two"
        assert [n.id for n in one.nodes()] == ["one", "two"]

        one._keeper.kill()   # one hangs (no heartbeat, no goodbye): its key expires, two prunes it
        wait_until(lambda: dead == [("one", ["c1"])], 5, "one found dead")
        assert [n.id for n in two.nodes()] == ["two"] and two.owner_of_call("c1") is None
        assert db.hget("callfork:streams", "s1") is None and two.cluster_calls() == []
    finally:
        one.stop()
        two.stop()
    assert db.keys("callfork:*") == []


def test_the_cluster_package_imports_nothing_of_ours_and_patches_nothing():
    ours = ("callfork", "esl_app", "verbs", "audio_fork", "webhooks", "records", "switch_sim", "fsargs")
    for path in (ROOT / "cluster").glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] not in ours, (path.name, line)
    code = ("import cluster\nfrom gevent import monkey\n"
            "assert not [m for m in ('socket', 'thread', 'threading', 'time', 'select', 'ssl') "
            "if monkey.is_module_patched(m)]\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
