"""A Vobiz REST call (`POST Call/`) whose node is killed with -9 while its callee still rings (issue 15;
docs/cluster.md "When a node goes away"): two real `callfork serve` nodes sharing one simulator (as
workers share a switch), a real Redis and PostgreSQL (tests/cluster_servers.py).

- While it rings, the Vobiz API shows it as before: not in `GET Call/` (live or all), no `GET
  Call/<uuid>/` (it has no record until it fails or reaches callfork).
- Node B, which takes A for dead, hangs its channel up on the switch, posts its Hangup webhook once
  (HangupCause NORMAL_TEMPORARY_FAILURE, the error saying node A died) and records the call ended.
"""
import json

import redis
import requests

from cluster_servers import PostgresServer, RedisServer
from harness import AppServer
from pg_support import fresh_dsn, rows
from serve_support import ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import Simulator
from waiting import wait_until

ACCOUNT = "MA_LOCAL"
AUTH = {"X-Auth-ID": ACCOUNT, "X-Auth-Token": "test-token"}
RINGS_FOREVER = "loopback/m:^:set:callee={to}^ring_ready^sleep:30000/default/inline"
NODE_ENV = {"CALLFORK_CLUSTER_HEARTBEAT_S": "0.3", "CALLFORK_CLUSTER_NODE_TTL_S": "2",
            "CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": RINGS_FOREVER}


def _api(node, method, path, **kw):
    return requests.request(method, f"{node.http_url}/api/v1/Account/{ACCOUNT}{path}", headers=AUTH, timeout=10,
                            **kw)


def test_a_killed_nodes_ringing_vobiz_call_gets_one_hangup_webhook_from_the_survivor(tmp_path):
    app = AppServer().start()
    numbers = number_table(app.url("/never"))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        db = redis.Redis.from_url(redis_server.url, decode_responses=True)
        sim_ports = serve_ports()
        sim = Simulator(esl=("127.0.0.1", sim_ports["esl"]),
                        socket_target=("127.0.0.1", sim_ports["outbound"])).start()
        nodes = {}
        for name in ("a", "b"):
            ports = dict(serve_ports(), esl=sim_ports["esl"])   # one switch for both
            (tmp_path / name).mkdir()
            config = write_serve_config(tmp_path / name / "callfork.toml", ports, numbers)
            nodes[name] = ServeProcess(config, ports["http"], env=dict(
                NODE_ENV, CALLFORK_CLUSTER_REDIS_URL=redis_server.url, CALLFORK_CLUSTER_NODE_ID=f"node-{name}",
                CALLFORK_STORE_POSTGRES_DSN=dsn)).start()
        a, b = nodes["a"], nodes["b"]
        try:
            resp = _api(a, "POST", "/Call/", json={"from": "15551230001", "to": "15551230002",
                                                   "answer_url": app.url("/never"),
                                                   "hangup_url": app.url("/hangup"), "ring_timeout": 60})
            assert resp.status_code == 201, resp.text
            request_uuid = resp.json()["request_uuid"]
            uuid = wait_until(lambda: next((u for u, raw in db.hgetall("callfork:calls").items()
                                            if json.loads(raw)["node"] == "node-a"), None), 5, "the call registered")
            wait_until(lambda: uuid in sim.channels, 5, "the call's channel on the switch")
            # what the API shows of a ringing Vobiz REST call, on either node
            for node in (a, b):
                assert _api(node, "GET", "/Call/").json()["objects"] == []
                assert _api(node, "GET", "/Call/", params={"status": "all"}).json()["objects"] == []
                assert _api(node, "GET", f"/Call/{uuid}/").status_code == 404

            a.kill9()
            form = app.wait_path("/hangup", timeout=30)[0].form
            assert form["CallUUID"] == uuid and form["RequestUUID"] == request_uuid, form
            assert form["HangupCause"] == "NORMAL_TEMPORARY_FAILURE" and form["HangupCauseCode"] == "5000", form
            assert "node node-a died" in form["Error"], form
            assert form["From"] == "15551230001" and form["To"] == "15551230002", form
            wait_until(lambda: uuid not in sim.channels, 10, "the ringing channel hung up by node B")
            record = wait_until(lambda: (rows(dsn, f"SELECT * FROM calls WHERE uuid='{uuid}'") or [None])[0], 10,
                                "the call's record")
            assert record["end_time"] is not None and "node node-a died" in record["error"], record
            assert _api(b, "GET", "/Call/").json()["objects"] == []
            wait_until(lambda: not rows(dsn, f"SELECT 1 AS h FROM call_hooks WHERE call_uuid='{uuid}'"), 10,
                       "its hook dropped")
            # one webhook: a second sweep (a restarted node A) finds nothing more to send
            a.start()
            wait_until(lambda: _api(a, "GET", "/Call/").status_code == 200, 10, "node A back")
            delivered = rows(dsn, f"SELECT COUNT(*) AS n FROM outbox WHERE call_uuid='{uuid}'")[0]["n"]
            assert delivered == 1
            assert len([r for r in app.requests if r.path == "/hangup"]) == 1
            assert not [r for r in app.requests if r.path == "/never"]
        finally:
            b.stop()
            a.stop()
            sim.stop()
            app.stop()
