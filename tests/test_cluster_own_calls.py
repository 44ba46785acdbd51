"""Who closes which calls of a node id, and who holds it (issue 15; docs/cluster.md "One node per id"
and "When a node goes away"): real `callfork serve` processes on simulators, a real Redis and
PostgreSQL (tests/cluster_servers.py), PostgreSQL reached through a TCP proxy the test cuts where
a node must lose it alone.

- A node started while PostgreSQL is away keeps the call it takes meanwhile when PostgreSQL is back
  (its first heartbeat there closes only what an earlier process of its id left live).
- A twin refused by Redis gives the id back in PostgreSQL: the live node's heartbeat is its own again.
- A killed node's ringing Twilio REST call gets its `completed` callback from the survivor.
- A twin in another PID namespace of this host (a container) is refused, not taken for the holder's
  restart.
- A node restarted while PostgreSQL is away claims its id there once it answers, and hangs up the
  dead process's call.
- A survivor whose switch is away closes a dead node's calls together (one wait for its control
  connection, not one per call).
"""
import os
import subprocess

import pg8000.native
import requests

from cluster_servers import PostgresServer, RedisServer
from harness import AppServer
from pg_support import fresh_dsn, rows
from serve_support import CALLFORK, ROOT, ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import CallScript, Simulator
from test_cluster_node_death import CuttableProxy
from waiting import wait_until

LONG_CALL = "<Response><Speak>Hello.</Speak><Wait length=\"60\"/></Response>"
SCHEMA_LOCK = 7261003   # records/node_beats.py: taken by a node's heartbeat until its table is known
NODE_ENV = {"CALLFORK_CLUSTER_HEARTBEAT_S": "0.3", "CALLFORK_CLUSTER_NODE_TTL_S": "2"}


def _rows(dsn, sql):
    """rows(), or [] while the node has not created the table yet."""
    try:
        return rows(dsn, sql)
    except Exception as exc:
        if "does not exist" in str(exc):
            return []
        raise


def test_a_node_started_while_postgresql_was_away_keeps_its_own_calls_when_it_is_back(tmp_path):
    app = AppServer().start()
    numbers = number_table(app.document("/answer", LONG_CALL), app.url("/hangup"))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        # the node reaches PostgreSQL through a proxy the test cuts: PostgreSQL itself stays up, so the
        # test can hold the lock the node's first heartbeat there takes (records/node_beats.py) until
        # the node's kept record writes are in: then that heartbeat's close sees this process's call
        proxy = CuttableProxy(("127.0.0.1", pg.port))
        proxy.cut()
        host_port, database = dsn.rsplit("@", 1)[1].split("/")
        node_dsn = dsn.replace(host_port, f"127.0.0.1:{proxy.port}")
        lock = pg8000.native.Connection("callfork", host="127.0.0.1", port=pg.port, database=database, timeout=5)
        lock.run(f"SELECT pg_advisory_lock({SCHEMA_LOCK})")
        ports = serve_ports()
        config = write_serve_config(tmp_path / "callfork.toml", ports, numbers)
        sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
        serve = ServeProcess(config, ports["http"], env=dict(
            NODE_ENV, CALLFORK_CLUSTER_REDIS_URL=redis_server.url, CALLFORK_CLUSTER_NODE_ID="node-a",
            CALLFORK_STORE_POSTGRES_DSN=node_dsn))
        try:
            try:   # (its /healthz may say degraded while PostgreSQL is away: not 200)
                serve.start(timeout=3)
            except AssertionError:
                wait_until(serve.answering, 15, "callfork serve answering /healthz", interval=0.1)
            call = sim.place_call(CallScript(to="1000", hangup_after=120))
            wait_until(lambda: app.wait_path("/answer", timeout=0.1), 15, "the call reached the app", interval=0.1)

            proxy.restore()
            wait_until(lambda: _rows(dsn, f"SELECT uuid FROM calls WHERE uuid='{call.uuid}' AND end_time IS NULL"),
                       15, "the call's record written once PostgreSQL is reachable", interval=0.1)
            lock.run(f"SELECT pg_advisory_unlock({SCHEMA_LOCK})")
            # the heartbeat that first reaches PostgreSQL starts the close of the previous process's
            # calls; a heartbeat later than that one, it has had its chance
            wait_until(lambda: _rows(dsn, "SELECT node_id FROM cluster_nodes WHERE node_id='node-a'"), 15,
                       "node A's PostgreSQL heartbeat", interval=0.1)
            first = rows(dsn, "SELECT beat_at FROM cluster_nodes WHERE node_id='node-a'")[0]["beat_at"]
            wait_until(lambda: rows(dsn, "SELECT beat_at FROM cluster_nodes WHERE node_id='node-a'")[0]["beat_at"]
                       > first + 0.5, 15, "two more heartbeats", interval=0.1)

            channel = sim.get_channel(call.uuid)
            assert channel is not None and not channel.hungup, serve.output()
            record = rows(dsn, f"SELECT status, end_time, error FROM calls WHERE uuid='{call.uuid}'")[0]
            assert record["status"] == "in-progress" and record["end_time"] is None, record
            assert "died during" not in serve.output()
            assert app.events("Hangup") == []
        finally:
            lock.close()
            serve.stop()
            proxy.stop()
            sim.stop()
            app.stop()


def test_a_twin_refused_by_redis_leaves_the_live_nodes_postgresql_heartbeat_alone(tmp_path):
    """A second `callfork serve` with a live node's id, started while that node's PostgreSQL heartbeat
    is stale (it cannot reach PostgreSQL for a while), takes the id in PostgreSQL, then is refused by
    Redis and exits 1: the live node's heartbeat must be its own again once it reaches PostgreSQL
    (else it stays stale for good, and the node is taken for dead the first time it loses Redis)."""
    app = AppServer().start()
    numbers = number_table(app.document("/answer", LONG_CALL))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        proxy = CuttableProxy(("127.0.0.1", pg.port))
        host_port = dsn.rsplit("@", 1)[1].split("/")[0]
        env = dict(NODE_ENV, CALLFORK_CLUSTER_REDIS_URL=redis_server.url, CALLFORK_CLUSTER_NODE_ID="node-a")
        ports = serve_ports()
        (tmp_path / "a").mkdir()
        config = write_serve_config(tmp_path / "a" / "callfork.toml", ports, numbers)
        sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
        node = ServeProcess(config, ports["http"], env=dict(
            env, CALLFORK_STORE_POSTGRES_DSN=dsn.replace(host_port, f"127.0.0.1:{proxy.port}"))).start()
        twin = None
        try:
            instance = wait_until(lambda: _rows(dsn, "SELECT instance FROM cluster_nodes WHERE node_id='node-a'"),
                                  15, "node A's PostgreSQL heartbeat", interval=0.1)[0]["instance"]
            proxy.cut()
            wait_until(lambda: rows(dsn, "SELECT 1 AS stale FROM cluster_nodes WHERE node_id='node-a' AND "
                                         "beat_at < EXTRACT(EPOCH FROM clock_timestamp()) - 2"), 15,
                       "node A's PostgreSQL heartbeat stale", interval=0.1)
            twin_ports = serve_ports()
            (tmp_path / "twin").mkdir()
            twin_config = write_serve_config(tmp_path / "twin" / "callfork.toml", twin_ports, numbers)
            twin = ServeProcess(twin_config, twin_ports["http"], env=dict(env, CALLFORK_STORE_POSTGRES_DSN=dsn))
            try:
                twin.start(timeout=30)
            except AssertionError:
                pass
            wait_until(lambda: twin.proc.poll() is not None, 30, "the twin exited", interval=0.1)
            assert twin.proc.returncode == 1 and "node id node-a is registered in Redis by a live node" in \
                twin.output(), twin.output()

            proxy.restore()
            wait_until(lambda: rows(dsn, f"SELECT 1 AS fresh FROM cluster_nodes WHERE node_id='node-a' AND "
                                         f"instance='{instance}' AND beat_at > EXTRACT(EPOCH FROM clock_timestamp()) - 2"),
                       15, "node A's own PostgreSQL heartbeat fresh again",
                       interval=0.1)
        finally:
            node.stop()
            proxy.stop()
            sim.stop()
            app.stop()


RINGS_FOREVER = "loopback/m:^:set:callee={to}^ring_ready^sleep:30000/default/inline"


def test_a_killed_nodes_ringing_twilio_call_gets_its_completed_callback_from_the_survivor(tmp_path):
    """A Twilio call node A placed (`POST Calls.json`) still rings when A is killed with -9: its record
    is live, and the survivor that closes it sends its StatusCallback's `completed` once, after the
    `initiated` and `ringing` A sent (the next SequenceNumber)."""
    app = AppServer().start()
    numbers = number_table(app.document("/answer", LONG_CALL))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        nodes, sims = {}, []
        for name in ("a", "b"):
            ports = serve_ports()
            (tmp_path / name).mkdir()
            config = write_serve_config(tmp_path / name / "callfork.toml", ports, numbers)
            sims.append(Simulator(esl=("127.0.0.1", ports["esl"]),
                                  socket_target=("127.0.0.1", ports["outbound"])).start())
            nodes[name] = ServeProcess(config, ports["http"], env=dict(
                NODE_ENV, CALLFORK_CLUSTER_REDIS_URL=redis_server.url, CALLFORK_CLUSTER_NODE_ID=f"node-{name}",
                CALLFORK_STORE_POSTGRES_DSN=dsn, CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING=RINGS_FOREVER)).start()
        a, b = nodes["a"], nodes["b"]
        try:
            resp = requests.post(f"{a.http_url}/2010-04-01/Accounts/MA_LOCAL/Calls.json", auth=("MA_LOCAL", "test-token"),
                                 timeout=10, data={"To": "+15551230002", "From": "+15551230001",
                                                   "Url": app.url("/never"), "Timeout": "60",
                                                   "StatusCallback": app.url("/status"),
                                                   "StatusCallbackEvent": ["initiated", "ringing", "completed"]})
            assert resp.status_code == 201, resp.text
            sid = resp.json()["sid"]

            def callbacks():
                return [r.form for r in app.requests if r.path == "/status" and r.form.get("CallSid") == sid]
            wait_until(lambda: [f["CallStatus"] for f in callbacks()] == ["initiated", "ringing"], 15,
                       "initiated and ringing from node A", interval=0.1)
            a.kill9()
            uuid = f"{sid[2:10]}-{sid[10:14]}-{sid[14:18]}-{sid[18:22]}-{sid[22:]}"
            wait_until(lambda: rows(dsn, f"SELECT 1 AS closed FROM calls WHERE uuid='{uuid}' AND end_time IS NOT NULL"),
                       30, "node B closed node A's call", interval=0.1)
            wait_until(lambda: len(callbacks()) >= 3, 15, "the completed status callback", interval=0.1)
            forms = callbacks()
            assert len(forms) == 3, forms
            assert forms[2]["CallStatus"] not in ("queued", "initiated", "ringing", "in-progress"), forms[2]
            assert [f["SequenceNumber"] for f in forms] == ["0", "1", "2"], forms
            assert "node node-a died" in rows(dsn, f"SELECT error FROM calls WHERE uuid='{uuid}'")[0]["error"]
        finally:
            b.stop()
            a.stop()
            for sim in sims:
                sim.stop()
            app.stop()


def test_a_twin_in_another_pid_namespace_of_the_same_host_is_refused(tmp_path):
    """Containers on one host share its boot id, and with host networking its hostname too, while
    each has its own PID namespace (and /proc): a holder's pid means nothing there. A second node with
    a live node's id, started in another PID namespace of this host (`unshare --pid --mount-proc`),
    must be refused as on another host, not find the live node 'gone' and take its id over."""
    app = AppServer().start()
    numbers = number_table(app.document("/answer", LONG_CALL))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        env = dict(NODE_ENV, CALLFORK_CLUSTER_REDIS_URL=redis_server.url, CALLFORK_CLUSTER_NODE_ID="node-a",
                   CALLFORK_STORE_POSTGRES_DSN=dsn)
        ports = serve_ports()
        (tmp_path / "a").mkdir()
        config = write_serve_config(tmp_path / "a" / "callfork.toml", ports, numbers)
        sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
        node = ServeProcess(config, ports["http"], env=env).start()
        twin = None
        try:
            twin_ports = serve_ports()
            (tmp_path / "twin").mkdir()
            twin_config = write_serve_config(tmp_path / "twin" / "callfork.toml", twin_ports, numbers)
            log = open(tmp_path / "twin.log", "w+")
            twin = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] + CALLFORK
                                    + ["--config", str(twin_config), "serve"], cwd=str(twin_config.parent),
                                    env=dict(os.environ, PYTHONPATH=str(ROOT), **env), stdout=log,
                                    stderr=subprocess.STDOUT)

            def output():
                return (tmp_path / "twin.log").read_text(errors="replace")
            wait_until(lambda: twin.poll() is not None or "taken over" in output() or "HTTP API" in output(),
                       60, "the twin exited or started", interval=0.1)
            assert "node id node-a is registered in" in output() and "by a live node" in output(), output()
            assert twin.wait(10) == 1, output()
            assert node.health()["cluster"]["node_id"] == "node-a"
        finally:
            if twin is not None and twin.poll() is None:
                twin.kill()   # (--kill-child: its child, the node, dies with it)
                twin.wait(10)
            node.stop()
            sim.stop()
            app.stop()


def test_a_node_restarted_while_postgresql_is_away_takes_its_id_back_there_once_it_answers(tmp_path):
    """Node A is killed with -9 during a call that outlives it on the switch (a conference: the app
    callfork started runs on), and starts again while it cannot reach PostgreSQL: once it can, its
    PostgreSQL registration must be its own (the dead process's row, on this host with its pid gone,
    is taken over as at a start) and the dead process's call hung up, as when PostgreSQL answers at
    start."""
    app = AppServer().start()
    room = app.document("/answer", lambda req: f"<Response><Conference>room-{req.form['CallUUID']}</Conference>"
                                               "</Response>")
    numbers = number_table(room, app.url("/hangup"))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        proxy = CuttableProxy(("127.0.0.1", pg.port))
        host_port = dsn.rsplit("@", 1)[1].split("/")[0]
        ports = serve_ports()
        config = write_serve_config(tmp_path / "callfork.toml", ports, numbers)
        sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
        env = dict(NODE_ENV, CALLFORK_CLUSTER_REDIS_URL=redis_server.url, CALLFORK_CLUSTER_NODE_ID="node-a",
                   CALLFORK_STORE_POSTGRES_DSN=dsn.replace(host_port, f"127.0.0.1:{proxy.port}"))
        node = ServeProcess(config, ports["http"], env=env).start()
        again = None
        try:
            call = sim.place_call(CallScript(to="1000", hangup_after=120))
            wait_until(lambda: _rows(dsn, f"SELECT 1 AS entered FROM call_events WHERE call_uuid='{call.uuid}' "
                                          "AND kind='conference_enter'"), 15, "the call in its room", interval=0.1)
            node.kill9()
            proxy.cut()
            again = ServeProcess(config, ports["http"], env=env)
            try:   # (its /healthz may say degraded while PostgreSQL is away: not 200)
                again.start(timeout=3)
            except AssertionError:
                wait_until(again.answering, 15, "callfork serve answering /healthz", interval=0.1)
            assert not sim.get_channel(call.uuid).hungup   # (it waits for PostgreSQL to tell)
            proxy.restore()
            assert call.wait(20)["hangup_cause"] == "NORMAL_TEMPORARY_FAILURE", again.output()
            wait_until(lambda: rows(dsn, f"SELECT 1 AS closed FROM calls WHERE uuid='{call.uuid}' AND "
                                         "end_time IS NOT NULL"), 10, "the record closed", interval=0.1)
            wait_until(lambda: app.events("Hangup"), 10, "the Hangup webhook", interval=0.1)
            assert len(app.events("Hangup")) == 1
        finally:
            (again or node).stop()
            proxy.stop()
            sim.stop()
            app.stop()


def test_a_survivor_without_its_switch_closes_a_dead_nodes_calls_together(tmp_path):
    """The survivor that takes node A for dead hangs A's calls up on its own FreeSWITCH, waiting for
    its control connection if it is down (callfork/node_death.py). While that connection is down,
    it waits once, not once per call: A's calls are closed, and their webhooks queued, together."""
    app = AppServer().start()
    numbers = number_table(app.document("/answer", LONG_CALL), app.url("/hangup"))
    with RedisServer() as redis_server, PostgresServer() as pg:
        dsn = fresh_dsn(pg)
        nodes, sims = {}, {}
        for name in ("a", "b"):
            ports = serve_ports()
            (tmp_path / name).mkdir()
            config = write_serve_config(tmp_path / name / "callfork.toml", ports, numbers)
            sims[name] = Simulator(esl=("127.0.0.1", ports["esl"]),
                                   socket_target=("127.0.0.1", ports["outbound"])).start()
            nodes[name] = ServeProcess(config, ports["http"], env=dict(
                NODE_ENV, CALLFORK_CLUSTER_REDIS_URL=redis_server.url, CALLFORK_CLUSTER_NODE_ID=f"node-{name}",
                CALLFORK_STORE_POSTGRES_DSN=dsn)).start()
        a, b = nodes["a"], nodes["b"]
        try:
            calls = [sims["a"].place_call(CallScript(to="1000", hangup_after=120)) for _ in range(3)]
            uuids = "', '".join(c.uuid for c in calls)
            wait_until(lambda: len(_rows(dsn, f"SELECT uuid FROM calls WHERE uuid IN ('{uuids}') AND "
                                              "status='in-progress'")) == 3, 15, "node A's calls live", interval=0.1)
            sims["b"].stop()   # node B's FreeSWITCH goes away: its control connection is down
            a.kill9()
            wait_until(lambda: len(rows(dsn, f"SELECT uuid FROM calls WHERE uuid IN ('{uuids}') AND "
                                             "end_time IS NOT NULL")) == 3, 60, "node B closed node A's calls",
                       interval=0.2)
            ends = [r["end_time"] for r in rows(dsn, f"SELECT end_time FROM calls WHERE uuid IN ('{uuids}')")]
            assert max(ends) - min(ends) < 5, ends
            wait_until(lambda: len(app.events("Hangup")) >= 3, 15, "their Hangup webhooks", interval=0.1)
        finally:
            b.stop()
            a.stop()
            for sim in sims.values():
                sim.stop()
            app.stop()
