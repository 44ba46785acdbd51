"""What FreeSWITCH 1.10.12 does with a channel whose outbound `socket ... async full` connection is
closed by a killed process (a callfork node or worker killed with -9), captured on a real FreeSWITCH
and replayed on the simulator.

Each case originates `loopback/9999/default` (its far leg answers and parks) with the inline app
`socket:127.0.0.1:<port> async full`; the app is another OS process of this tool that answers the
socket (`connect`, `myevents`, for the `resume` case also `resume`), then prints `ready` and sleeps.
The tool starts `uuid_audio_fork` on the channel to a WebSocket server of its own, waits for the
fork's connection, and kills the app process with SIGKILL (the kernel closes its socket). For
`WATCH_S` seconds it records the channel's events (`event json` on an inbound connection: name,
Application, Hangup-Cause, in order), then whether the channel still exists (`uuid_exists`),
whether the fork's WebSocket was closed (and its close code) and whether audio frames still came in
the last second of the window. The channel is killed at the end whatever happened (`uuid_kill`).

    python tests/socket_kill_truth.py capture --esl 127.0.0.1:8021:ClueCon \
        --out tests/fixtures/fs-captures/socket-kill.json
    python tests/socket_kill_truth.py sim          # the same cases on the simulator, differences printed

It uses neither port 8084 nor a `callfork`/`stream` number: no shared lock needed.
tests/test_sim_socket_kill_truth.py replays the fixture.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import gevent  # noqa: E402

import truth_capture  # noqa: E402
from fork_ws_server import start_server  # noqa: E402
from truth_capture import api_response, esl_connect  # noqa: E402

WATCH_S = 3.0
SLEEP = "sendmsg\ncall-command: execute\nexecute-app-name: sleep\nexecute-app-arg: 600000\nevent-lock: true"
# (callfork holds a call that waits with `sleep` slices of 600 s: verbs/idle_audio.py)
CASES = (("killed", []), ("killed after resume", ["resume"]), ("killed during sleep 600000", [SLEEP]))
EVENTS = ("CHANNEL_PARK CHANNEL_UNPARK CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP "
          "CHANNEL_HANGUP_COMPLETE CUSTOM mod_audio_fork::connect mod_audio_fork::disconnect "
          "mod_audio_fork::error")

# the app process: answers one outbound socket connection, sends its commands, says `ready`, waits
APP = r"""
import signal, socket, sys
listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0)); listener.listen(1)
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
def command(text):
    conn.sendall(text.encode() + b"\n\n")
    data = b""
    while b"\n\n" not in data:
        data += conn.recv(65536)
    head = data.split(b"\n\n", 1)[0].decode()
    n = [int(l.split(": ")[1]) for l in head.split("\n") if l.startswith("Content-Length: ")]
    while n and len(data.split(b"\n\n", 1)[1]) < n[0]:
        data += conn.recv(65536)
for line in ["connect", "myevents"] + sys.argv[1:]:   # (sendmsg's reply is its command/reply)
    command(line)
print("ready", flush=True)
signal.pause()   # until the capture kills this process with -9
"""


def _read_events(conn, uuid, seen):
    while True:
        try:
            headers, body, _raw = conn.frame(60)
        except (socket.timeout, EOFError, OSError):
            return
        if headers.get("Content-Type") != "text/event-json":
            continue
        event = json.loads(body)
        if event.get("Unique-ID") == uuid:
            seen.append((time.monotonic(), {k: event[k] for k in ("Event-Name", "Event-Subclass", "Application",
                                                                  "Hangup-Cause") if event.get(k)}))


def run_case(esl_address, password, name, commands):
    """One case on the switch at `esl_address` (a real one or the simulator)."""
    app = subprocess.Popen([sys.executable, "-c", APP, *commands], stdout=subprocess.PIPE, text=True)
    ws = start_server()
    events_conn = esl_connect(esl_address, password)
    control = esl_connect(esl_address, password)
    uuid = str(uuidlib.uuid4())
    try:
        port = int(app.stdout.readline())
        events_conn.command("event json " + EVENTS)
        seen = []   # (monotonic time read, event)
        reader = gevent.spawn(_read_events, events_conn, uuid, seen)
        control.send(f"bgapi originate {{origination_uuid={uuid}}}loopback/9999/default "
                     f"'socket:127.0.0.1:{port} async full' inline\n\n")
        assert app.stdout.readline().strip() == "ready"
        control.send(f"api uuid_audio_fork {uuid} start {ws.url('/killed')} mono 8k\n\n")
        fork_reply = api_response(control).strip()
        fork = ws.wait_connection(timeout=10)
        assert fork is not None, "the fork did not connect"
        fork.wait_until(lambda: len(fork.binaries) > 5, 5)
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        killed_at = time.monotonic()
        gevent.sleep(WATCH_S)   # the observation window (what happens in it is the capture)
        reader.kill()
        events = [event for t, event in seen if t >= killed_at]
        frames_at_end = [t for t, kind, _d in fork.messages if kind == "binary" and t >= time.monotonic() - 1.0]
        control.send(f"api uuid_exists {uuid}\n\n")
        exists = api_response(control).strip()
        return {"case": name, "commands": ["connect", "myevents", *commands], "fork_start": fork_reply,
                "events_after_kill": events, "channel_exists_after_s": {str(WATCH_S): exists == "true"},
                "fork_closed": fork.closed.is_set(), "fork_close_code": fork.close_code,
                "fork_frames_in_last_second": bool(frames_at_end)}
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        try:
            control.send(f"api uuid_kill {uuid}\n\n")
            api_response(control)
        finally:
            control.close()
            events_conn.close()
            ws.stop()


def capture(address, password):
    return [run_case(address, password, name, commands) for name, commands in CASES]


def replay(sim):
    return [run_case(sim.esl_address, "ClueCon", name, commands) for name, commands in CASES]


def compare(expected, got):
    def differences(want, have):
        out = []
        for key in ("events_after_kill", "channel_exists_after_s", "fork_closed", "fork_frames_in_last_second"):
            if want[key] != have[key]:
                out.append(f"{want['case']}: {key}: FreeSWITCH {want[key]!r}, simulator {have[key]!r}")
        return out
    return truth_capture.compare_cases(expected, got, lambda c: c["case"], differences)


if __name__ == "__main__":
    sys.exit(truth_capture.main(sys.argv[1:], doc=__doc__, fixture="socket-kill.json", capture=capture,
                                replay=replay, compare=compare))
