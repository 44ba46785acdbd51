"""The ops commands as subprocesses (`callfork calls|call|streams|stop-stream|hangup|tail`) against a
live service, and against none; `callfork serve` without a config file (loopback defaults and the
built-in sample app); the --help texts."""
import json
import os
import subprocess
import sys
from pathlib import Path

import requests

from harness import Stack, free_port
from switch_sim import CallScript, Simulator
from serve_support import ServeProcess
from wsapp import AppServer as WsApp
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
CALLFORK = [sys.executable, "-m", "callfork.cli"]


def _env(http_port=None, token="test-token", **extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="250")
    env.pop("CALLFORK_CONFIG", None)
    if http_port is not None:
        env["CALLFORK_SERVER_HTTP_LISTEN"] = f"127.0.0.1:{http_port}"
    if token is not None:
        env["CALLFORK_SERVER_AUTH_TOKEN"] = token
    env.update(extra)
    return env


def cli(*args, env, cwd=None, timeout=30):
    return subprocess.run(CALLFORK + list(args), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_ops_commands_against_a_live_service(tmp_path):
    ws = WsApp().start()
    try:
        with Stack() as stack:
            stack.app.document("/answer", "<Response><Speak>hi</Speak><Wait length='30'/></Response>")
            port = stack.http_url.rsplit(":", 1)[1]
            env = _env(port)
            call = stack.call(to="1000", from_="15551230002", hangup_after=40)
            stack.wait(lambda: stack.service.calls)
            uuid = next(iter(stack.service.calls))

            # tail follows the SSE feed; started first so it sees what follows
            tail = subprocess.Popen(CALLFORK + ["tail", "--json"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            one_call = subprocess.Popen(CALLFORK + ["tail", "--json", uuid], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
            try:
                for follower in (tail, one_call):   # each says when it follows: it sees all that comes next
                    assert follower.stderr.readline().startswith("following the events of ")

                out = cli("calls", "--json", env=env)
                assert out.returncode == 0, out.stderr
                assert [c["uuid"] for c in json.loads(out.stdout)["objects"]] == [uuid]
                table = cli("calls", env=env)
                assert table.returncode == 0 and uuid in table.stdout and "15551230002" in table.stdout

                resp = requests.post(stack.api_url(f"/Call/{uuid}/Stream/"), headers=stack.api_headers(),
                                     json={"service_url": ws.url}, timeout=5)
                stream_id = resp.json()["stream_id"]
                ws.wait_connection(5)
                stack.wait(lambda: (stack.service.store.get_stream(stream_id) or {}).get("status") == "in-progress")

                streams = cli("streams", "--json", env=env)
                assert streams.returncode == 0, streams.stderr
                assert [s["stream_id"] for s in json.loads(streams.stdout)] == [stream_id]
                assert stream_id in cli("streams", env=env).stdout

                stopped = cli("stop-stream", uuid, stream_id, env=env)
                assert stopped.returncode == 0 and stream_id in stopped.stdout
                stack.wait(lambda: stack.service.store.get_stream(stream_id)["status"] == "completed")
                assert json.loads(cli("streams", "--json", env=env).stdout) == []
                again = cli("stop-stream", uuid, stream_id, env=env)
                assert again.returncode == 1 and "Stream not found" in again.stderr
                assert cli("stop-stream", uuid, env=env).returncode == 0  # all (none left): fine

                # the first lines of tail: timeline events of this call, one JSON object per line
                for follower in (tail, one_call):
                    first = [json.loads(follower.stdout.readline()) for _ in range(2)]
                    assert all(item["call_uuid"] == uuid and item["kind"] and "time" in item for item in first)
            finally:
                for follower in (tail, one_call):
                    follower.terminate()
                    follower.wait(5)

            one = cli("call", uuid, "--json", env=env)
            assert one.returncode == 0, one.stderr
            record = json.loads(one.stdout)
            assert record["call"]["uuid"] == uuid and record["streams"][0]["stream_id"] == stream_id
            readable = cli("call", uuid, env=env)
            assert readable.returncode == 0 and "timeline" in readable.stdout and "Speak" in readable.stdout

            hung = cli("hangup", uuid, env=env)
            assert hung.returncode == 0 and uuid in hung.stdout
            call.wait(10)
            assert stack.app.wait_event("Hangup").form["HangupSource"] == "API Request"
            stack.wait(lambda: not stack.service.calls)
            gone = cli("hangup", uuid, env=env)
            assert gone.returncode == 1 and "404" in gone.stderr and "already ended" in gone.stderr
            unknown = cli("call", "00000000-0000-0000-0000-000000000000", env=env)
            assert unknown.returncode == 1 and "call not found" in unknown.stderr
            assert json.loads(cli("calls", "--json", env=env).stdout)["objects"] == []
            ended = json.loads(cli("calls", "--all", "--json", env=env).stdout)["objects"]
            assert ended[0]["uuid"] == uuid and ended[0]["status"] == "completed"

            refused = cli("calls", env=_env(port, token="wrong"))
            assert refused.returncode == 1 and "refused the credentials" in refused.stderr
    finally:
        ws.stop()


def test_ops_commands_without_a_service_say_how_to_start_it(tmp_path):
    port = free_port()
    for args in (["calls"], ["call", "x"], ["streams"], ["hangup", "x"], ["stop-stream", "x"], ["tail"]):
        out = cli(*args, env=_env(port), cwd=str(tmp_path))
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert f"callfork is not running at http://127.0.0.1:{port}" in out.stderr
        assert "callfork serve" in out.stderr
        assert "Traceback" not in out.stderr
    missing = cli("--config", str(tmp_path / "nope.toml"), "calls", env=_env())
    assert missing.returncode == 1 and "config file not found" in missing.stderr


def test_serve_without_a_config_file_uses_the_sample_app(tmp_path):
    ports = {name: free_port() for name in ("esl", "outbound", "http", "relay")}
    # no config file: only the listen addresses move off the default ports (environment overrides)
    env = _env(token=None, CALLFORK_FREESWITCH_ESL_PORT=str(ports["esl"]),
               CALLFORK_SERVER_OUTBOUND_LISTEN=f"127.0.0.1:{ports['outbound']}",
               CALLFORK_SERVER_HTTP_LISTEN=f"127.0.0.1:{ports['http']}",
               CALLFORK_SERVER_RELAY_LISTEN=f"127.0.0.1:{ports['relay']}")
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    serve = ServeProcess(tmp_path / "callfork.toml", ports["http"], env=env, args=["serve"])
    try:
        serve.start()
        out = serve.output()
        assert "built-in sample app at http://127.0.0.1:" in out
        token = (tmp_path / "var" / "auth_token").read_text().strip()
        assert f"generated REST auth token for MA_LOCAL: {token}" in out
        call = sim.place_call(CallScript(to="1000", hangup_after=30))
        # the ops CLI in the same directory finds the generated token in ./var/auth_token
        ops_env = _env(ports["http"], token=None)
        def streaming():  # the sample app's document reaches its <Stream> (after the welcome prompt)
            shown = cli("call", call.uuid, "--json", env=ops_env, cwd=str(tmp_path))
            return shown.returncode == 0 and any(e["kind"] == "stream_started"
                                                 for e in json.loads(shown.stdout)["timeline"])
        wait_until(streaming, 15, "the stream started", interval=0.2)
        assert cli("hangup", call.uuid, env=ops_env, cwd=str(tmp_path)).returncode == 0
        summary = call.wait(10)
        assert summary["answered"] is True
        def delivered():
            shown = cli("call", call.uuid, "--json", env=ops_env, cwd=str(tmp_path))
            assert shown.returncode == 0, shown.stderr
            record = json.loads(shown.stdout)
            done = any(w["event"] == "Hangup" for w in record["webhooks"]) and \
                all(w["status"] == "delivered" for w in record["webhooks"])
            return record if done else None
        record = wait_until(delivered, 10, "every webhook delivered", interval=0.1)
        hooks = {w["event"]: w for w in record["webhooks"]}
        assert hooks["Hangup"]["last_status_code"] == 200 and hooks["StartStream"]["last_status_code"] == 200
        assert record["call"]["answer_url"].endswith("/answer")
        assert [s["status"] for s in record["streams"]] == ["completed"]
        assert "sample app ← /hangup Hangup" in serve.output()
    finally:
        serve.stop()
        sim.stop()


def test_help_texts():
    for args, expected in ((["--help"], "serve"), (["serve", "--help"], "built-in"),
                           (["demo", "--help"], "echo bot"), (["calls", "--help"], "--all"),
                           (["tail", "--help"], "Ctrl-C"), (["stop-stream", "--help"], "stream_id"),
                           (["hangup", "--help"], "API Request"), (["webhooks", "--help"], "held"),
                           (["retry-webhooks", "--help"], "--skip-failed")):
        out = cli(*args, env=_env())
        assert out.returncode == 0 and expected in out.stdout, (args, out.stdout, out.stderr)
    out = cli(env=_env())
    assert out.returncode == 2 and "COMMAND" in out.stdout
