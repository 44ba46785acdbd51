"""Nodes and workers that die, or only look dead (issue 15; docs/cluster.md): real `callfork serve`
processes on simulators, a real Redis and PostgreSQL (tests/cluster_servers.py).

- A node that loses Redis alone for longer than node_ttl_s (its Redis connection goes through a TCP
  proxy the test cuts) is taken out of the registry by the survivor, but its call record stays live
  (its PostgreSQL heartbeat is recent); once the proxy lets it through again, REST for its call
  through the other node reaches it again.
- A second `callfork serve` with the node id of a live node exits 1 at start, saying so.
- A worker killed with -9 (`--workers 2`): the restarted worker hangs its call up on the switch,
  closes the record with the cause that says the node died, and the app gets the Hangup webhook
  once; a node killed with -9 whose Twilio call is closed by the survivor: the app gets the
  `completed` status callback once.
"""
import os
import re
import socket
import subprocess

import gevent
import pytest
import requests
from gevent.server import StreamServer

from cluster_servers import PostgresServer, RedisServer
from harness import AppServer
from pg_support import fresh_dsn, rows
from serve_support import CALLFORK, ROOT, ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import CallScript, Simulator
from waiting import wait_until

AUTH = {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "test-token"}
LONG_CALL = "<Response><Speak>Hello.</Speak><Wait length=\"60\"/></Response>"
NODE_ENV = {"CALLFORK_CLUSTER_HEARTBEAT_S": "0.3", "CALLFORK_CLUSTER_NODE_TTL_S": "2"}


class CuttableProxy:
    """A TCP proxy to `target` on a free loopback port: `cut()` closes every connection and refuses
    new ones (accepted and closed at once), `restore()` lets them through again."""

    def __init__(self, target):
        self.target = target
        self.open = True
        self.conns = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    @property
    def port(self):
        return self.server.server_port

    def _handle(self, client, _addr):
        if not self.open:
            client.close()
            return
        upstream = socket.create_connection(self.target)
        if not self.open:   # cut while this connection was being made: it must not outlive the cut
            client.close()
            upstream.close()
            return
        self.conns += [client, upstream]

        def pipe(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.close()
                    except OSError:
                        pass
        gevent.joinall([gevent.spawn(pipe, client, upstream), gevent.spawn(pipe, upstream, client)])

    def cut(self):
        self.open = False
        for s in self.conns:
            try:
                s.close()
            except OSError:
                pass
        self.conns = []

    def restore(self):
        self.open = True

    def stop(self):
        self.cut()
        self.server.stop()


_STARTED = []   # what `_node` started in this module's running test


@pytest.fixture(autouse=True)
def _stop_what_nodes_started():
    """Every node `_node` started stops with its test, also when the test failed before its own
    `finally` (a second node that could not start left the first one running)."""
    yield
    while _STARTED:
        try:
            _STARTED.pop().stop()
        except Exception:
            pass


def _node(tmp, name, redis_url, dsn, numbers, **env):
    tmp.mkdir()
    ports = serve_ports()
    config = write_serve_config(tmp / "callfork.toml", ports, numbers)
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    _STARTED.append(sim)
    serve = ServeProcess(config, ports["http"], env=dict(
        NODE_ENV, CALLFORK_CLUSTER_REDIS_URL=redis_url, CALLFORK_CLUSTER_NODE_ID=name,
        CALLFORK_STORE_POSTGRES_DSN=dsn, **env))
    _STARTED.append(serve)
    return sim, serve.start(), config


def _call(serve, uuid):
    return requests.get(f"{serve.http_url}/api/v1/Account/MA_LOCAL/Call/{uuid}/", headers=AUTH, timeout=10)


def _record(serve, uuid):
    reply = _call(serve, uuid)
    return reply.json() if reply.status_code == 200 else {}


def _health(serve):
    return requests.get(f"{serve.http_url}/healthz", timeout=5).json()


def _node_ids(serve):
    return {n["id"] for n in _health(serve).get("cluster", {}).get("nodes", [])}


def test_a_node_that_lost_redis_alone_is_not_taken_for_dead_and_heals(tmp_path):
    app = AppServer().start()
    numbers = number_table(app.document("/answer", LONG_CALL), app.url("/hangup"))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        proxy = CuttableProxy(("127.0.0.1", redis_server.port))
        sim_a, a, _ = _node(tmp_path / "a", "node-a", f"redis://127.0.0.1:{proxy.port}/0", dsn, numbers)
        sim_b, b, _ = _node(tmp_path / "b", "node-b", redis_server.url, dsn, numbers)
        try:
            call = sim_a.place_call(CallScript(to="1000", hangup_after=120))
            wait_until(lambda: _record(b, call.uuid).get("status") == "in-progress", 15,
                       "node A's call live, and reachable through node B", interval=0.1)
            proxy.cut()
            # A's key expires (node_ttl_s 2 s) and B prunes it from the registry ...
            wait_until(lambda: "node-a" not in _node_ids(b), 15, "node B no longer lists node A", interval=0.1)
            # ... and B decides about its calls from A's PostgreSQL heartbeat (its log line)
            wait_until(lambda: "node node-a has no Redis registration, but its PostgreSQL heartbeat" in b.output(),
                       15, "node B checked node A's PostgreSQL heartbeat", interval=0.1)
            wait_until(lambda: _health(a)["cluster"]["redis"] == "unreachable", 5, "node A sees Redis away")
            # meanwhile B answers for the call from the shared records only, not carried to A
            assert "X-Callfork-Served-By" not in _call(b, call.uuid).headers
            record = rows(dsn, f"SELECT status, end_time, error FROM calls WHERE uuid='{call.uuid}'")[0]
            assert record["status"] == "in-progress" and record["end_time"] is None, record
            assert sim_a.get_channel(call.uuid) is not None and not sim_a.get_channel(call.uuid).hungup

            proxy.restore()
            wait_until(lambda: _call(b, call.uuid).headers.get("X-Callfork-Served-By") == "node-a", 15,
                       "REST for node A's call through node B reaching node A again", interval=0.1)
            got = _call(b, call.uuid)
            assert got.headers.get("X-Callfork-Served-By") == "node-a"
            assert got.json()["status"] == "in-progress"
            assert app.events("Hangup") == []
        finally:
            b.stop()
            a.stop()
            proxy.stop()
            sim_a.stop()
            sim_b.stop()
            app.stop()


def test_a_second_node_with_a_live_nodes_id_exits_1_saying_so(tmp_path):
    app = AppServer().start()
    numbers = number_table(app.document("/answer", LONG_CALL))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        sim_a, a, _ = _node(tmp_path / "a", "node-a", redis_server.url, dsn, numbers)
        (tmp_path / "twin").mkdir()
        ports = serve_ports()
        config = write_serve_config(tmp_path / "twin" / "callfork.toml", ports, numbers)
        env = dict(os.environ, PYTHONPATH=str(ROOT), **NODE_ENV,
                   CALLFORK_CLUSTER_REDIS_URL=redis_server.url, CALLFORK_CLUSTER_NODE_ID="node-a",
                   CALLFORK_STORE_POSTGRES_DSN=dsn)
        try:
            twin = subprocess.run(CALLFORK + ["--config", str(config), "serve"], cwd=str(config.parent), env=env,
                                  capture_output=True, text=True, timeout=60)
            assert twin.returncode == 1, twin.stdout + twin.stderr
            assert re.search(r"node id node-a is registered in (PostgreSQL|Redis) by a live node \(pid \d+",
                             twin.stderr), twin.stderr
            # the first node goes on, still registered as itself
            assert _health(a)["cluster"]["node_id"] == "node-a" and "node-a" in _node_ids(a)
        finally:
            a.stop()
            sim_a.stop()
            app.stop()


def _worker_pids(serve) -> dict:
    return {int(i): int(pid) for i, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", serve.output())}


def test_a_killed_workers_call_ends_on_the_switch_and_its_app_gets_one_hangup_webhook(tmp_path):
    ports = dict(serve_ports(), relay=0)
    app = AppServer().start()
    # each caller alone in a conference room of its own: the `conference` app callfork started runs on
    # once callfork's process is gone, as any app does (tests/fixtures/fs-captures/socket-kill.json):
    # nobody would end the call
    room = app.document("/answer", lambda req: f"<Response><Conference>room-{req.form['CallUUID']}</Conference>"
                                               "</Response>")
    numbers = number_table(room, app.url("/hangup"))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
        config = write_serve_config(tmp_path / "callfork.toml", ports, numbers, server=(
            f'workers = 2\n[cluster]\nredis_url = "{redis_server.url}"\nheartbeat_s = 0.3\nnode_ttl_s = 10\n'
            f'[store]\npostgres_dsn = "{dsn}"\n'))
        serve = ServeProcess(config, ports["http"])
        try:
            serve.start(timeout=30)
            wait_until(lambda: len(re.findall(r"callfork\.service: callfork \S+: FreeSWITCH socket app",
                                              serve.output())) == 2, 20, "both workers serving", interval=0.1)
            calls = [sim.place_call(CallScript(to="1000", hangup_after=120)) for _ in range(6)]
            wait_until(lambda: len(rows(dsn, "SELECT DISTINCT call_uuid FROM call_events "
                                            "WHERE kind='conference_enter'")) == 6, 20, "every call in the room",
                       interval=0.1)
            nodes = {r["uuid"]: r["node_id"] for r in rows(dsn, "SELECT uuid, node_id FROM calls")}
            victim_node = nodes[calls[0].uuid]
            index = int(victim_node.rsplit("-w", 1)[1])
            victim_calls = [c for c in calls if nodes[c.uuid] == victim_node]
            others = [c for c in calls if nodes[c.uuid] != victim_node]
            pid = _worker_pids(serve)[index]
            subprocess.run(["kill", "-9", str(pid)], check=True)
            # the restarted worker takes its id back (the dead one's registrations live node_ttl_s, 10 s,
            # and the supervisor restarts it after 1 s: the survivor cannot have taken it for dead)
            # and hangs its calls up on the switch
            for c in victim_calls:
                assert c.wait(30)["hangup_cause"] == "NORMAL_TEMPORARY_FAILURE"
            assert len(re.findall(rf"worker {index} started", serve.output())) == 2
            for where in ("Redis", "PostgreSQL"):
                assert re.search(rf"node id {victim_node} was held in {where} by pid {pid} on \S+, which is gone: "
                                 "taken over", serve.output()), where
            for c in victim_calls:
                wait_until(lambda: rows(dsn, f"SELECT status FROM calls WHERE uuid='{c.uuid}'")[0]["status"]
                           == "completed", 10, "the record closed", interval=0.1)
                record = rows(dsn, f"SELECT * FROM calls WHERE uuid='{c.uuid}'")[0]
                assert record["hangup_cause"] == "NORMAL_TEMPORARY_FAILURE" and record["hangup_cause_code"] == 5000
                assert f"node {victim_node} died during the call" in record["error"]
            wait_until(lambda: len(app.events("Hangup")) >= len(victim_calls), 20, "the Hangup webhooks", interval=0.1)
            hangups = {}
            for req in app.events("Hangup"):
                hangups.setdefault(req.form["CallUUID"], []).append(req.form)
            assert set(hangups) == {c.uuid for c in victim_calls}
            for uuid, forms in hangups.items():
                assert len(forms) == 1, forms
                assert forms[0]["HangupCause"] == "NORMAL_TEMPORARY_FAILURE"
                assert forms[0]["CallStatus"] == "completed" and forms[0]["AnswerTime"]
                assert f"node {victim_node} died" in forms[0]["Error"]
            # the other worker's calls go on
            for c in others:
                assert not sim.get_channel(c.uuid).hungup
        finally:
            serve.stop()
            sim.stop()
            app.stop()


def test_a_killed_nodes_twilio_call_gets_one_completed_callback_from_the_survivor(tmp_path):
    app = AppServer().start()
    twiml = app.document("/twiml", "<Response><Say>Hello.</Say><Pause length=\"60\"/></Response>")
    numbers = (f'[[numbers]]\nnumber = "*"\napi = "twilio"\nanswer_url = "{twiml}"\n'
               f'hangup_url = "{app.url("/status")}"\n')
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        sim_a, a, _ = _node(tmp_path / "a", "node-a", redis_server.url, dsn, numbers)
        sim_b, b, _ = _node(tmp_path / "b", "node-b", redis_server.url, dsn, numbers)
        try:
            call = sim_a.place_call(CallScript(to="1000", hangup_after=120))
            wait_until(lambda: _record(b, call.uuid).get("status") == "in-progress", 15, "the call live",
                       interval=0.1)
            a.kill9()
            wait_until(lambda: _record(b, call.uuid).get("status") == "completed", 20,
                       "node B closed the dead node's call", interval=0.1)
            record = _record(b, call.uuid)
            assert record["hangup_cause"] == "NORMAL_TEMPORARY_FAILURE"
            assert "node node-a died during the call" in record["error"]
            wait_until(lambda: app.wait_path("/status", timeout=0.1), 20, "the status callback", interval=0.2)
            completed = [r.form for r in app.requests if r.path == "/status"]
            assert len(completed) == 1, completed
            assert completed[0]["CallStatus"] == "completed" and completed[0]["HangupCause"] == "NORMAL_TEMPORARY_FAILURE"
            assert completed[0]["CallSid"] == "CA" + call.uuid.replace("-", "")
            keys = rows(dsn, f"SELECT idempotency_key FROM outbox WHERE call_uuid='{call.uuid}'")
            assert len(keys) == 1
        finally:
            b.stop()
            a.stop()
            sim_a.stop()
            sim_b.stop()
            app.stop()
