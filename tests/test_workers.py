"""`callfork serve --workers 2` (callfork/workers.py) as a real process on one simulator, with a real
Redis and PostgreSQL (tests/cluster_servers.py): the socket app's connections are spread over both
workers (each logs its calls under its own prefix, and each call's record names its worker's node
id), a stream of a call on either worker carries the caller's audio to the app (the fork URL names that
worker's relay), a REST hang-up through the shared HTTP port reaches the call whichever worker answers
it, a worker killed with -9 is started again, SIGTERM stops them all, and two workers without the
cluster servers are refused at start, and a drain that reaches one worker drains them all (FreeSWITCH's
pause is switch-wide) and the supervisor exits. SO_REUSEPORT itself: two listeners on one port, each
taking connections."""
import json
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from cluster_servers import PostgresServer, RedisServer
from fork_ws_server import start_server
from harness import AppServer
from serve_support import CALLFORK, ROOT, ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import CallScript, Simulator
from waiting import wait_until

from esl_app.outbound import reuse_port_listener

CALLS = 12   # enough that both workers get some: the kernel picks a listener by a hash of each connection


def _cluster(redis, pg) -> str:
    return f'workers = 2\n[cluster]\nredis_url = "{redis.url}"\n[store]\npostgres_dsn = "{pg.dsn}"\n'


def _worker_pids(serve) -> dict:
    """{worker index: pid} of the supervisor's children, from their log lines."""
    return {int(i): int(pid) for i, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", serve.output())}


def _relay_ports(serve) -> dict:
    """{relay port: worker index}, from the workers' start-up lines (the newest wins)."""
    return {int(port): int(w) for w, port in
            re.findall(r"\[w(\d+)\] callfork\.audio_fork\.relay: relay listening on [\d.]+:(\d+)", serve.output())}


def _serving(serve) -> set:
    """The workers that have started all their listeners (the service's last start-up line, logged
    once its socket-app and HTTP listeners are bound): a call placed before that goes to the others."""
    return {int(w) for w in re.findall(r"\[w(\d+)\] callfork\.service: callfork \S+: FreeSWITCH socket app",
                                       serve.output())}


def _fork_worker(serve, sim, uuid: str):
    """The worker whose relay the call's fork URL names (the simulator's mod_audio_fork was given it),
    or None while the call has no stream."""
    ports = [s.pipe.port for (u, _bug), s in list(sim.audio_fork.sessions.items()) if u == uuid and s.pipe]
    return _relay_ports(serve).get(ports[0]) if ports else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def two_workers(tmp_path):
    ports = dict(serve_ports(), relay=0)   # each worker's relay on a port of its own choosing (port + i
    # could be taken: the free ports of serve_ports are only free now)
    app = AppServer().start()
    ws = start_server()
    doc = app.document("/answer", f'<Response><Stream>{ws.url("/noproto")}</Stream><Wait length="60"/></Response>')
    redis, pg = RedisServer().start(), PostgresServer().start()
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    config = write_serve_config(tmp_path / "callfork.toml", ports, number_table(doc, app.url("/hangup")),
                                server=_cluster(redis, pg))
    serve = ServeProcess(config, ports["http"], args=["--config", str(config), "serve"])
    try:
        serve.start(timeout=30)
        wait_until(lambda: len(_worker_pids(serve)) == 2 and _serving(serve) == {0, 1},
                   20, "both workers serving", interval=0.1)
        yield {"serve": serve, "sim": sim, "ws": ws, "app": app, "ports": ports, "pg": pg}
    finally:
        serve.stop()
        sim.stop()
        ws.stop()
        app.stop()
        pg.stop()
        redis.stop()


def _place(sim, n) -> list:
    calls = [sim.place_call(CallScript(to="1000", hangup_after=60)) for _ in range(n)]
    return calls


def _streamed(ws, uuid) -> bool:
    """The app got media of the call's stream."""
    for conn in list(ws.connections):
        starts = [json.loads(t) for t in conn.texts if '"start"' in t]
        if starts and starts[0].get("start", {}).get("callId") == uuid:
            return any('"media"' in t for t in conn.texts)
    return False


def _record_nodes(pg, uuids) -> dict:
    """{call uuid: node_id} of the call records in PostgreSQL."""
    import pg8000.native

    from urllib.parse import urlsplit
    dsn = urlsplit(pg.dsn)
    conn = pg8000.native.Connection(dsn.username, host=dsn.hostname, port=dsn.port, database=dsn.path.lstrip("/"),
                                    password=dsn.password)
    try:
        return {u: n for u, n in conn.run("SELECT uuid, node_id FROM calls WHERE uuid = ANY(:u)", u=list(uuids))}
    finally:
        conn.close()


def _api(serve, path):
    return f"{serve.http_url}/api/v1/Account/MA_LOCAL{path}"


def _calls_on_both_workers(serve, sim, ws, hangup_after=60) -> tuple:
    """CALLS calls, each streaming to the app; (the calls, {uuid: the worker whose relay its fork URL names})."""
    calls = [sim.place_call(CallScript(to="1000", hangup_after=hangup_after)) for _ in range(CALLS)]
    uuids = [c.uuid for c in calls]
    wait_until(lambda: all(_fork_worker(serve, sim, u) is not None for u in uuids), 20, "every call streaming",
               interval=0.1)
    owners = {u: _fork_worker(serve, sim, u) for u in uuids}
    assert set(owners.values()) == {0, 1}, owners
    return calls, owners


def test_calls_land_on_both_workers_and_each_streams_through_its_workers_relay(two_workers):
    serve, sim, ws = two_workers["serve"], two_workers["sim"], two_workers["ws"]
    calls, owners = _calls_on_both_workers(serve, sim, ws)
    # the app gets the caller's audio of every call: a relay accepts only the streams its own worker
    # registered, so each fork URL named the relay of the worker that runs the call
    wait_until(lambda: all(_streamed(ws, u) for u in owners), 20, "media of every call's stream", interval=0.1)


def test_each_calls_record_names_its_worker_and_rest_reaches_it_through_the_shared_port(two_workers):
    serve, sim, ws = two_workers["serve"], two_workers["sim"], two_workers["ws"]
    calls, owners = _calls_on_both_workers(serve, sim, ws)
    # the record names the worker's node id (both write to the shared PostgreSQL)
    nodes = _record_nodes(two_workers["pg"], owners)
    for u, w in owners.items():
        assert nodes.get(u, "").endswith(f"-w{w}"), (u, nodes.get(u), w)
    # a hang-up through the shared HTTP port reaches the call, whichever worker the kernel hands
    # the request to (a new connection each: both workers answer some)
    auth = ("MA_LOCAL", "test-token")
    for u in owners:
        got = requests.delete(_api(serve, f"/Call/{u}/"), auth=auth, timeout=5)
        assert got.status_code in (200, 204), (u, got.status_code, got.text)
    for c in calls:
        assert c.wait(20)["hangup_cause"] == "NORMAL_CLEARING"


def test_a_worker_killed_with_9_is_restarted_and_takes_calls_again(two_workers):
    serve, sim = two_workers["serve"], two_workers["sim"]
    pids = _worker_pids(serve)
    victim = pids[1]
    subprocess.run(["kill", "-9", str(victim)], check=True)
    wait_until(lambda: len(re.findall(r"worker 1 started", serve.output())) == 2, 15,
               "worker 1 started again", interval=0.1)
    assert re.search(r"worker 1 \(pid %d\) died \(signal 9\)" % victim, serve.output())
    new = _worker_pids(serve)[1]
    assert new != victim and _alive(new) and _alive(pids[0])
    # it takes calls again: place calls until one streams through worker 1's relay (the kernel's hash
    # picks the worker; only the live process has that port)
    placed = []

    def one_on_w1():
        placed.append(sim.place_call(CallScript(to="1000", hangup_after=5)))
        return any(_fork_worker(serve, sim, c.uuid) == 1 and _streamed(two_workers["ws"], c.uuid) for c in placed)
    wait_until(one_on_w1, 30, "a call streaming through the restarted worker", interval=0.3)
    assert _alive(pids[0])


def test_sigterm_stops_every_worker_and_the_supervisor(two_workers):
    serve = two_workers["serve"]
    pids = _worker_pids(serve)
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(40) == 0
    assert not any(_alive(p) for p in pids.values())
    assert "all workers stopped" in serve.output()
    with pytest.raises(requests.ConnectionError):
        requests.get(serve.http_url + "/healthz", timeout=1)


def test_two_workers_without_the_cluster_servers_is_a_clear_error(tmp_path):
    ports = serve_ports()
    config = write_serve_config(tmp_path / "callfork.toml", ports, number_table("http://127.0.0.1:9/answer"))
    env = dict(__import__("os").environ, PYTHONPATH=str(ROOT))
    env.pop("CALLFORK_CONFIG", None)
    done = subprocess.run(CALLFORK + ["--config", str(config), "serve", "--workers", "2"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "[cluster] redis_url and [store] postgres_dsn" in done.stderr, done.stderr
    # nothing started: the ports are free
    for name in ("outbound", "http"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", ports[name]))
    bad = subprocess.run(CALLFORK + ["--config", str(config), "serve", "--workers", "0"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--workers" in bad.stderr


def test_reuse_port_listeners_share_a_port_and_each_takes_connections():
    first = reuse_port_listener(("127.0.0.1", 0))
    port = first.getsockname()[1]
    second = reuse_port_listener(("127.0.0.1", port))
    try:
        with socket.socket() as plain:   # a listener without SO_REUSEPORT cannot join them
            with pytest.raises(OSError):
                plain.bind(("127.0.0.1", port))
        taken = {0: 0, 1: 0}
        clients = []
        for _ in range(64):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        for i, listener in enumerate((first, second)):
            listener.setblocking(False)
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                conn.close()
                taken[i] += 1
        assert taken[0] + taken[1] == 64 and taken[0] > 0 and taken[1] > 0, taken
        for c in clients:
            c.close()
    finally:
        first.close()
        second.close()


def test_a_drain_through_the_shared_port_drains_every_worker_then_the_supervisor_exits(two_workers):
    serve, sim = two_workers["serve"], two_workers["sim"]
    pids = _worker_pids(serve)
    calls, owners = _calls_on_both_workers(serve, sim, two_workers["ws"], hangup_after=6)
    got = requests.post(f"{serve.http_url}/api/v1/ops/drain", auth=("MA_LOCAL", "test-token"), timeout=5)
    assert got.status_code == 202 and got.json()["draining"] is True, got.text
    # the worker that took the request pauses FreeSWITCH; the calls of both go on until they end
    wait_until(lambda: "FreeSWITCH refuses new inbound calls" in serve.output(), 10, "the switch paused",
               interval=0.1)
    assert serve.proc.poll() is None
    for c in calls:   # the callers hang up after 6 s
        summary = c.wait(30)
        assert summary["answered"] is True
    assert serve.proc.wait(40) == 0
    out = serve.output()
    assert len(re.findall(r"worker \d \(pid \d+\) drained and exited", out)) == 2, out[-3000:]
    assert "every worker drained and exited" in out
    assert not any(_alive(p) for p in pids.values())
    assert re.findall(r"worker \d started", out) == ["worker 0 started", "worker 1 started"]   # none restarted


def test_a_worker_that_cannot_start_stops_them_all(tmp_path):
    """The shared HTTP port held by a socket without SO_REUSEPORT: no worker can bind it, and the
    supervisor exits 1 instead of restarting them for ever."""
    ports = dict(serve_ports(), relay=0)
    with RedisServer() as redis, PostgresServer() as pg, socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["http"]))
        taken.listen(1)
        config = write_serve_config(tmp_path / "callfork.toml", ports, number_table("http://127.0.0.1:9/answer"),
                                    server=_cluster(redis, pg))
        env = dict(__import__("os").environ, PYTHONPATH=str(ROOT))
        env.pop("CALLFORK_CONFIG", None)
        done = subprocess.run(CALLFORK + ["--config", str(config), "serve"], env=env, capture_output=True,
                              text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert re.search(r"worker \d \(pid \d+\) could not start \(exit 1\): stopping all workers", out), out
    assert "cannot start" in out


def test_worker_config_names_the_node_and_gives_each_worker_its_relay_port():
    from callfork.workers import worker_config
    from esl_app import load_config

    config = load_config(None, env={"CALLFORK_SERVER_RELAY_LISTEN": "127.0.0.1:8090", "CALLFORK_SERVER_WORKERS": "3"})
    one = worker_config(config, 2, "box-7", "http://127.0.0.1:4444")
    assert one.server.relay_listen == "127.0.0.1:8092"
    assert one.cluster.node_id == "box-7-w2" and one.cluster.advertise_url == "http://127.0.0.1:4444"
    assert one.server.outbound_listen == config.server.outbound_listen and one.server.http_listen == config.server.http_listen
    ephemeral = load_config(None, env={"CALLFORK_SERVER_RELAY_LISTEN": "127.0.0.1:0"})
    assert worker_config(ephemeral, 1, "n", "").server.relay_listen == "127.0.0.1:0"


@pytest.mark.freeswitch
def test_two_workers_on_freeswitch_take_calls_and_stream_through_their_own_relay(tmp_path):
    """Under `flock /tmp/callfork-fs.lock` (both workers bind 8084): loopback calls from the real
    switch to `callfork` numbers land on both workers (their records name them), and the caller's
    audio of each reaches the app through mod_audio_fork's connection to the relay its fork URL names."""
    import uuid as uuidlib

    from pause_inbound_truth import _api
    from truth_capture import esl_connect, esl_setting

    address, password = esl_setting(__import__("os").environ["CALLFORK_FS_ESL"])
    ports = dict(serve_ports(), esl=address[1], outbound=8084, relay=0)
    app, ws = AppServer().start(), start_server()
    doc = app.document("/answer", f'<Response><Stream>{ws.url("/noproto")}</Stream><Wait length="30"/></Response>')
    esl = esl_connect(address, password)
    callers = [str(uuidlib.uuid4()) for _ in range(CALLS)]
    with RedisServer() as redis, PostgresServer() as pg:
        config = write_serve_config(tmp_path / "callfork.toml", ports, number_table(doc, app.url("/hangup")),
                                    server=_cluster(redis, pg))
        config.write_text(config.read_text().replace("[freeswitch]\n", f"[freeswitch]\nesl_password = \"{password}\"\n"))
        serve = ServeProcess(config, ports["http"])
        try:
            serve.start(timeout=30)
            wait_until(lambda: len(_worker_pids(serve)) == 2 and len(_relay_ports(serve)) == 2
                       and _serving(serve) == {0, 1}, 20, "both workers serving", interval=0.1)
            for n, uuid in enumerate(callers):   # the A leg sends silence and parks; the B leg runs callfork<n>
                _api(esl, f"bgapi originate {{origination_uuid={uuid}}}loopback/callfork{n + 1}/default "
                          f"'set:send_silence_when_idle=-1,park' inline")
            started = lambda: [json.loads(t)["start"]["callId"] for c in list(ws.connections)   # noqa: E731
                               for t in c.texts[:1] if '"start"' in t]
            try:
                wait_until(lambda: len(started()) == CALLS, 30, "every call's stream started", interval=0.2)
            except AssertionError:
                raise AssertionError(f"{len(started())} streams started: {serve.output()[-4000:]}") from None
            uuids = started()
            wait_until(lambda: all(_streamed(ws, u) for u in uuids), 20, "media of every call", interval=0.2)
            nodes = _record_nodes(pg, uuids)
            assert len(nodes) == CALLS and {n.rsplit("-", 1)[1] for n in nodes.values()} == {"w0", "w1"}, nodes
        finally:
            try:
                for uuid in callers:
                    _api(esl, f"uuid_kill {uuid}")
                serve.stop()
            finally:
                esl.close()
                ws.stop()
                app.stop()
