"""A node that dies with live calls (issue 15; docs/cluster.md): two real `callfork serve` nodes sharing
a real Redis and PostgreSQL; node A is killed with `kill -9` during a call; once its registration
expires, node B prunes it and closes the dead node's call records in the shared store (status
completed, the error naming the dead node, a timeline row), while B's own live call is untouched.
Both nodes, and another client, read the same records."""
import requests

from cluster_servers import PostgresServer, RedisServer
from harness import AppServer
from pg_support import fresh_dsn, rows
from serve_support import ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import CallScript, Simulator
from waiting import wait_until

AUTH = {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "test-token"}
LONG_CALL = "<Response><Speak>Hello.</Speak><Wait length=\"60\"/></Response>"


def _node(tmp, name, redis_url, dsn, answer_url):
    tmp.mkdir()
    ports = serve_ports()
    config = write_serve_config(tmp / "callfork.toml", ports, number_table(answer_url))
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    serve = ServeProcess(config, ports["http"], env={
        "CALLFORK_CLUSTER_REDIS_URL": redis_url, "CALLFORK_CLUSTER_NODE_ID": name,
        "CALLFORK_CLUSTER_HEARTBEAT_S": "0.3", "CALLFORK_CLUSTER_NODE_TTL_S": "2",
        "CALLFORK_STORE_POSTGRES_DSN": dsn})
    return sim, serve.start()


def _call_record(serve, uuid):
    reply = requests.get(f"{serve.http_url}/api/v1/Account/MA_LOCAL/Call/{uuid}/", headers=AUTH, timeout=10)
    return reply.json() if reply.status_code == 200 else {}


def test_a_dead_nodes_live_calls_are_closed_by_a_survivor(tmp_path):
    app = AppServer().start()
    answer = app.document("/answer", LONG_CALL)
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        sim_a, a = _node(tmp_path / "a", "node-a", redis_server.url, dsn, answer)
        sim_b, b = _node(tmp_path / "b", "node-b", redis_server.url, dsn, answer)
        try:
            on_a = sim_a.place_call(CallScript(to="1000", hangup_after=60))
            on_b = sim_b.place_call(CallScript(to="1000", hangup_after=60))
            for serve, call in ((a, on_a), (b, on_b)):
                wait_until(lambda: _call_record(serve, call.uuid).get("status") == "in-progress", 15,
                           "the call live in the shared records", interval=0.1)
            assert {r["uuid"]: r["node_id"] for r in rows(dsn, "SELECT uuid, node_id FROM calls")} == {
                on_a.uuid: "node-a", on_b.uuid: "node-b"}

            a.kill9()
            wait_until(lambda: _call_record(b, on_a.uuid).get("status") == "completed", 15,
                       "node B closed the dead node's call", interval=0.1)
            closed = _call_record(b, on_a.uuid)
            assert "node node-a died during the call" in closed["error"] and closed["end_time"]
            timeline = requests.get(f"{b.http_url}/api/v1/Account/MA_LOCAL/Call/{on_a.uuid}/Timeline/",
                                    headers=AUTH, timeout=10).json()
            assert any(e["kind"] == "service_restarted" and e["detail"].get("node_id") == "node-a"
                       for e in timeline["timeline"])
            # node B's own call goes on, its record untouched
            assert _call_record(b, on_b.uuid)["status"] == "in-progress"
        finally:
            b.stop()
            a.stop()
            sim_a.stop()
            sim_b.stop()
            app.stop()
