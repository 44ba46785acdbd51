"""`callfork drain` (callfork/drain.py): a real `callfork serve` process with live calls is drained
through the ops CLI and the HTTP API, on the simulator and (marked `freeswitch`) on a real
FreeSWITCH 1.10.12: the switch is paused (`fsctl pause inbound`, tests/fixtures/fs-captures/
pause-inbound.json), new calls are refused (a SIP INVITE: 503; a call that still reaches the socket:
hung up with NORMAL_TEMPORARY_FAILURE, its app never asked; a REST call: 503), /healthz says
draining with a 503, a second drain changes nothing, the live calls finish on their own (the
callers hang up: their hangup webhooks arrive), the process exits 0 after the last one, and
FreeSWITCH stays paused until callfork starts again on the same data_dir, which resumes it.

The real-switch test pauses the whole switch: run it under `flock /tmp/callfork-fs.lock` (it binds
127.0.0.1:8084 too); it resumes the switch in a `finally` and checks that it did.
"""
import os
import subprocess
import sys
import uuid as uuidlib
from pathlib import Path

import pytest
import requests

from http_receiver import HttpReceiver, Reply
from pause_inbound_truth import SipProbe, _api
from serve_support import ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import CallScript, Simulator
from truth_capture import esl_connect, esl_setting
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
CALLFORK = [sys.executable, "-m", "callfork.cli"]
AUTH = {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "test-token"}
DOCUMENT = '<Response><Speak>hello</Speak><Wait length="120"/></Response>'


def _app() -> HttpReceiver:
    def respond(req):
        if req.path == "/answer":
            return Reply(body=DOCUMENT.encode(), content_type="application/xml")
        return Reply()
    return HttpReceiver(respond).start()


def _posts(app, path: str) -> list:
    return [r for r in app.requests if r.path == path]


def _health(node) -> tuple[int, dict]:
    resp = requests.get(node.http_url + "/healthz", timeout=5)
    return resp.status_code, resp.json()


def _cli(config, *args, wait=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="250")
    command = CALLFORK + ["--config", str(config)] + list(args)
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


def _drain_checks(node, config, live: int) -> subprocess.Popen:
    """Drain `node` (with `live` calls up) by `callfork drain`; check /healthz, a second drain, the
    unauthenticated one, a REST call refused. -> a `callfork drain --wait` running."""
    status, body = _health(node)
    assert status == 200 and body["status"] == "ok" and body["live_calls"] == live, body
    assert "callfork_draining 0" in requests.get(node.http_url + "/metrics", timeout=5).text.splitlines()
    assert requests.post(node.http_url + "/api/v1/ops/drain", timeout=5).status_code == 401

    out = _cli(config, "drain")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(f"draining: {live} live call(s) will finish, then callfork exits"), out.stdout
    wait_until(lambda: _health(node)[1]["drain"]["freeswitch_paused"], 10, "FreeSWITCH paused")
    status, body = _health(node)
    assert status == 503 and body["status"] == "draining", body
    assert body["drain"]["live_calls"] == live and body["drain"]["draining"] and not body["drain"]["drained"]

    again = requests.post(node.http_url + "/api/v1/ops/drain", headers=AUTH, timeout=5)
    assert again.status_code == 202 and again.json()["already_draining"] is True, again.text
    assert again.json()["since"] == body["drain"]["since"]

    rest = requests.post(node.http_url + "/api/v1/Account/MA_LOCAL/Call/", headers=AUTH, timeout=5,
                         json={"from": "15550001111", "to": "9999", "answer_url": "http://127.0.0.1:9/answer"})
    assert rest.status_code == 503 and "draining" in rest.json()["error"], rest.text
    waiter = _cli(config, "drain", "--wait", "--timeout", "60", wait=False)
    assert waiter.stdout.readline().startswith("already draining: "), "callfork drain --wait"
    return waiter


def _after_exit(node, waiter, app, hangups: int) -> None:
    assert node.proc.wait(30) == 0, node.output()
    rest, _ = waiter.communicate(timeout=30)
    assert waiter.returncode == 0 and "drained: callfork has exited" in rest, rest
    assert "refused: this node is draining" in node.output()
    got = _posts(app, "/hangup")
    assert len(got) == hangups and {r.form.get("HangupCause") for r in got} == {"NORMAL_CLEARING"}, \
        [r.form for r in got]


def test_drain_with_live_calls_on_the_simulator(tmp_path):
    ports = serve_ports()
    app = _app()
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    config = write_serve_config(tmp_path / "callfork.toml", ports,
                                number_table(app.url("/answer"), app.url("/hangup")))
    node = ServeProcess(config, ports["http"])
    try:
        node.start()
        calls = [sim.place_call(CallScript(to="1000")) for _ in range(2)]
        wait_until(lambda: _health(node)[1]["live_calls"] == 2 and len(_posts(app, "/answer")) == 2, 15,
                   "two live calls")
        waiter = _drain_checks(node, config, live=2)
        assert sim.paused_inbound

        # a new call: the switch refuses its INVITE (Simulator.place_call, as FreeSWITCH's 503)
        with pytest.raises(ValueError, match="503 Maximum Calls In Progress"):
            sim.place_call(CallScript(to="1000"))
        # one that reaches the socket anyway (an outbound channel: the pause does not stop those)
        stray = sim.create_channel(direction="outbound", destination="1000", caller_number="15550002222")
        assert stray.gone.wait(15)
        assert stray.hangup_cause == "NORMAL_TEMPORARY_FAILURE" and not stray.answered
        assert len(_posts(app, "/answer")) == 2      # its app was never asked
        assert _health(node)[1]["drain"]["refused_calls"] == 1
        metrics = requests.get(node.http_url + "/metrics", timeout=5).text.splitlines()
        assert "callfork_draining 1" in metrics and "callfork_drain_refused_calls_total 1" in metrics

        calls[0].channel.hangup("NORMAL_CLEARING")   # the callers hang up: the calls finish on their own
        wait_until(lambda: len(_posts(app, "/hangup")) == 1, 15, "the first hangup webhook")
        status, body = _health(node)
        assert node.proc.poll() is None and status == 503 and body["drain"]["live_calls"] == 1
        calls[1].channel.hangup("NORMAL_CLEARING")
        _after_exit(node, waiter, app, hangups=2)
        assert sim.paused_inbound and sim.run_api("fsctl", "pause_check inbound") == "true"   # stays paused

        node = ServeProcess(config, ports["http"])    # the same data_dir: FreeSWITCH resumed
        node.start()
        wait_until(lambda: not sim.paused_inbound, 15, "FreeSWITCH resumed by the next start")
        assert not (tmp_path / "var" / "freeswitch-paused-by-drain").exists()
        sim.place_call(CallScript(to="1000", hangup_after=1))
        wait_until(lambda: len(_posts(app, "/hangup")) == 3, 15, "a call after the restart")
    finally:
        node.stop()
        sim.stop()
        app.stop()


def test_a_drain_without_calls_exits_at_once_and_a_switch_paused_by_someone_else_stays_paused(tmp_path):
    ports = serve_ports()
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    config = write_serve_config(tmp_path / "callfork.toml", ports, number_table("http://127.0.0.1:9/answer"))
    try:
        sim.run_api("fsctl", "pause inbound")          # paused by an operator, not by a drain
        node = ServeProcess(config, ports["http"])
        try:
            node.start()
            wait_until(lambda: _health(node)[1]["freeswitch_connected"], 10, "the control connection")
            assert sim.paused_inbound                      # callfork resumes only what its drain paused
            out = _cli(config, "drain", "--json")
            assert out.returncode == 0, out.stderr
            assert node.proc.wait(15) == 0, node.output()
        finally:
            node.stop()
    finally:
        sim.stop()


@pytest.mark.freeswitch
def test_drain_with_live_calls_on_freeswitch(tmp_path):
    """Under `flock /tmp/callfork-fs.lock`: binds 8084 and pauses the whole switch for a few seconds."""
    address, password = esl_setting(os.environ["CALLFORK_FS_ESL"])
    ports = dict(serve_ports(), esl=address[1], outbound=8084)
    app = _app()
    config = write_serve_config(tmp_path / "callfork.toml", ports,
                                number_table(app.url("/answer"), app.url("/hangup")))
    config.write_text(config.read_text().replace("[freeswitch]\n", f"[freeswitch]\nesl_password = \"{password}\"\n"))
    esl = esl_connect(address, password)
    callers = [str(uuidlib.uuid4()) for _ in range(2)]
    transferred = str(uuidlib.uuid4())
    node = None
    try:
        node = ServeProcess(config, ports["http"])
        node.start()
        for n, uuid in enumerate(callers):   # loopback: -a leg (the caller) parks, -b leg runs callfork<n>
            _api(esl, f"bgapi originate {{origination_uuid={uuid}}}loopback/callfork{n + 1}/default &park()")
        # a channel that exists before the drain, to be sent to callfork's extension during it
        assert _api(esl, f"originate {{origination_uuid={transferred}}}loopback/9999/default &park()").startswith("+OK")
        wait_until(lambda: _health(node)[1]["live_calls"] == 2 and len(_posts(app, "/answer")) == 2, 20,
                   "two live calls")
        waiter = _drain_checks(node, config, live=2)
        assert _api(esl, "fsctl pause_check inbound") == "true"

        probe = SipProbe((address[0], 5060))   # a new call over SIP, and a proxy's health check
        try:
            assert probe.request("INVITE")["status"] == "SIP/2.0 503 Maximum Calls In Progress"
            assert probe.request("OPTIONS")["status"] == "SIP/2.0 503 Maximum Calls In Progress"
        finally:
            probe.close()
        # a call that reaches the socket anyway: an existing channel transferred to a callfork number
        assert _api(esl, f"uuid_transfer {transferred} callfork3 XML default").startswith("+OK")
        wait_until(lambda: _api(esl, f"uuid_exists {transferred}") == "false", 15, "the transferred call refused")
        assert len(_posts(app, "/answer")) == 2 and _health(node)[1]["drain"]["refused_calls"] == 1

        _api(esl, f"uuid_kill {callers[0]}")   # the callers hang up: the calls finish on their own
        wait_until(lambda: len(_posts(app, "/hangup")) == 1, 15, "the first hangup webhook")
        status, body = _health(node)
        assert node.proc.poll() is None and status == 503 and body["drain"]["live_calls"] == 1
        _api(esl, f"uuid_kill {callers[1]}")
        _after_exit(node, waiter, app, hangups=2)
        assert _api(esl, "fsctl pause_check inbound") == "true"   # it stays paused after callfork exits

        node = ServeProcess(config, ports["http"])               # the next start resumes it
        node.start()
        wait_until(lambda: _api(esl, "fsctl pause_check inbound") == "false", 15, "FreeSWITCH resumed")
    finally:
        try:
            if node is not None:
                node.stop()
            for uuid in callers + [transferred]:
                _api(esl, f"uuid_kill {uuid}")
        finally:
            _api(esl, "fsctl resume inbound")
            paused = _api(esl, "fsctl pause_check inbound")
            esl.close()
            app.stop()
        assert paused == "false", "FreeSWITCH is still paused"


def test_a_cluster_node_marks_itself_draining_in_the_registry(tmp_path):
    from cluster_servers import RedisServer

    ports = serve_ports()
    app = _app()
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    config = write_serve_config(tmp_path / "callfork.toml", ports, number_table(app.url("/answer")))
    try:
        with RedisServer() as redis:
            node = ServeProcess(config, ports["http"], env={"CALLFORK_CLUSTER_REDIS_URL": redis.url,
                                                            "CALLFORK_CLUSTER_NODE_ID": "n1"})
            try:
                node.start()
                def registered(draining):
                    nodes = _health(node)[1].get("cluster", {}).get("nodes", [])
                    return [n for n in nodes if n.get("id") == "n1" and n.get("draining") is draining]
                wait_until(lambda: registered(False), 10, "n1 registered, not draining")
                call = sim.place_call(CallScript(to="1000"))   # keeps the node up while it drains
                wait_until(lambda: _health(node)[1]["live_calls"] == 1, 15, "a live call")
                assert requests.post(node.http_url + "/api/v1/ops/drain", headers=AUTH, timeout=5).status_code == 202
                wait_until(lambda: registered(True), 10, "n1 draining in the registry")
                call.channel.hangup("NORMAL_CLEARING")
                assert node.proc.wait(20) == 0, node.output()
            finally:
                node.stop()
    finally:
        sim.stop()
        app.stop()
