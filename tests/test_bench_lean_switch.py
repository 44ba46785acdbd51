"""The lean FreeSWITCH stand-in of the calls benchmark (bench/lean_switch.py, bench/lean_events.py):
its frames are the capture's bytes, it honours `event plain|json` per connection, it fails loudly on
what it does not model, and a handful of calls through the real callfork Service reach their first
verb and end with their hangup webhook delivered."""
import json
import shutil
import tempfile
from pathlib import Path

import gevent
import gevent.event
import pytest
from gevent.server import StreamServer

from bench.lean_events import Frames
from bench.lean_switch import LeanSwitch
from esl_app import ESLParser, load_config
from callfork.service import Service
from switch_sim.events import Event

from harness import AppServer, free_port
from waiting import wait_until

ANSWERED = ("CS_EXECUTE", "ACTIVE", "4", "answered")


def _values(frames, headers):
    d = dict(headers)
    v = {"uuid": frames.cap_uuid, "dest": d["Caller-Destination-Number"],
         "created_us": d["Caller-Channel-Created-Time"], "answered_us": d["Caller-Channel-Answered-Time"],
         "hangup_us": d["Caller-Channel-Hangup-Time"], "date_local": d["Event-Date-Local"],
         "date_gmt": d["Event-Date-GMT"], "date_ts": d["Event-Date-Timestamp"], "seq": d["Event-Sequence"],
         "cause": d.get("Hangup-Cause", "")}
    v.update({"v:" + k[9:]: val for k, val in headers if k.startswith("variable_")})
    v.update({k: val for k, val in headers if k.startswith(("Application", "Original-", "Channel-Call-State-N"))})
    return v


def test_templates_rebuild_the_captured_frames_byte_for_byte():
    frames = Frames()
    caps = frames.captured
    cd, data = caps[0]
    v = _values(frames, cd)
    v["dest"] = dict(cd)["Channel-Destination-Number"]
    assert frames.connect_reply(v, ("current_application_data", "current_application", "socket_host")) == data
    cases = [  # (index in the capture, event, state, variables after the base block, tail, pre)
        (2, "CHANNEL_EXECUTE", ("CS_EXECUTE", "RINGING", "4", "ringing"),
         ("socket_host", "current_loop", "total_loops", "current_application"), ("Application", "Application-UUID"), ()),
        (3, "CHANNEL_ANSWER", ("CS_EXECUTE", "RINGING", "4", "answered"),
         ("socket_host", "current_loop", "total_loops", "current_application"), (), ()),
        (4, "CHANNEL_CALLSTATE", ANSWERED, (), (),
         (("Original-Channel-Call-State", "Original-Channel-Call-State"),
          ("Channel-Call-State-Number", "Channel-Call-State-Number"))),
        (5, "CHANNEL_EXECUTE_COMPLETE", ANSWERED,
         ("socket_host", "current_loop", "total_loops", "current_application", "endpoint_disposition"),
         ("Application", "Application-Response", "Application-UUID"), ()),
    ]
    for index, name, state, layout, tail, pre in cases:
        headers, data = caps[index]
        assert dict(headers)["Event-Name"] == name
        v = _values(frames, headers)
        assert frames.event("plain", name, state, layout, tail, pre=pre, values=v) == data, name
        # json: the simulator's serializer of the same header list (checked against json captures)
        assert frames.event("json", name, state, layout, tail, pre=pre, values=v) == Event(headers).frame("json")


class ScriptedCallfork:
    """A fake outbound server: runs `script(sock, parser)` on the first connection."""

    def __init__(self, script):
        self.script = script
        self.result = gevent.event.AsyncResult()
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    def _handle(self, sock, _peer):
        try:
            self.result.set(self.script(sock, ESLParser()))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.result.set_exception(exc)


def _read(sock, parser, until, timeout=5.0):
    out = []
    with gevent.Timeout(timeout):
        while not until(out):
            data = sock.recv(65536)
            if not data:
                break
            out += parser.feed(data)
    return out


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_one_call_in_either_event_format(fmt):
    def script(sock, parser):
        sock.sendall(b"connect\n\n")
        connect = _read(sock, parser, lambda o: o)[0]
        uuid = connect.headers["Unique-ID"]
        # pipelined setup, as callfork may send it
        sock.sendall(b"linger\n\nmyevents\n\nevent %s CHANNEL_HANGUP_COMPLETE CUSTOM mod_audio_fork::connect\n\n"
                     b"api uuid_setvar %s app_disable_expand_variables true\n\n" % (fmt.encode(), uuid.encode()))
        setup = _read(sock, parser, lambda o: len(o) >= 4)
        sock.sendall(b"sendmsg\ncall-command: execute\nexecute-app-name: answer\nevent-lock: true\n"
                     b"Event-UUID: 11111111-2222-3333-4444-555555555555\ncontent-type: text/plain\n"
                     b"content-length: 0\n\n")
        body = b"flite|slt|hi"
        sock.sendall(b"sendmsg\ncall-command: execute\nexecute-app-name: speak\nevent-lock: true\n"
                     b"Event-UUID: 66666666-2222-3333-4444-555555555555\ncontent-type: text/plain\n"
                     b"content-length: %d\n\n%s" % (len(body), body))
        run = _read(sock, parser, lambda o: sum(e.name == "CHANNEL_EXECUTE_COMPLETE" for e in o) >= 2)
        sock.sendall(b"api uuid_kill %s NORMAL_CLEARING\n\n" % uuid.encode())
        end = _read(sock, parser, lambda o: any(e.content_type == "text/disconnect-notice" for e in o))
        sock.sendall(b"exit\n\n")
        bye = _read(sock, parser, lambda o: any(e.content_type == "text/disconnect-notice" for e in o))
        return connect, setup, run, end, bye

    fake = ScriptedCallfork(script)
    sw = LeanSwitch()
    sw.c_target("127.0.0.1", fake.server.address[1])
    st = sw.place("1000")
    connect, setup, run, end, bye = fake.result.get(timeout=10)
    sw.wait_end(st, timeout=5)
    fake.server.stop()
    assert [e.reply_text for e in setup[:3]] == ["+OK will linger", "+OK Events Enabled",
                                                  "+OK event listener enabled %s" % fmt]
    assert setup[3].body == "+OK\n"
    ctype = "text/event-%s" % fmt
    events = [e for e in run + end if e.content_type == ctype]
    assert [e.name for e in events] == [
        "CHANNEL_EXECUTE", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE",
        "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_STATE", "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE"]
    assert events[2].get("Application-UUID") == "11111111-2222-3333-4444-555555555555"
    assert events[3].get("Application-Data") == "flite|slt|hi"
    assert events[4].get("variable_app_disable_expand_variables") == "true"
    assert events[-1].get("Hangup-Cause") == "NORMAL_CLEARING"
    assert all(e.get("Unique-ID") == connect.headers["Unique-ID"] for e in events)
    assert end[-1].get("Content-Disposition") == "linger" and end[-1].get("Linger-Time") == "-1"
    assert bye[0].reply_text == "+OK bye" and bye[-1].get("Content-Disposition") == "disconnect"
    assert st["exec"] >= st["sendmsg"] >= st["socket"] >= st["created"] and st["app"] == "answer"
    assert not st.get("error") and sw.not_modelled == 0


def test_playback_sendmsg_hangup_and_linger_seconds(tmp_path):
    import numpy as np
    import soundfile

    wav = tmp_path / "a.wav"
    soundfile.write(str(wav), np.zeros(800, dtype=np.int16), 8000)   # 0.1 s

    def script(sock, parser):
        sock.sendall(b"connect\n\n")
        uuid = _read(sock, parser, lambda o: o)[0].headers["Unique-ID"]
        sock.sendall(b"linger 1\n\nmyevents\n\nevent plain PLAYBACK_START PLAYBACK_STOP\n\n")
        setup = _read(sock, parser, lambda o: len(o) >= 3)
        for app, arg in (("answer", b""), ("playback", str(wav).encode()), ("hangup", b"USER_BUSY")):
            sock.sendall(b"sendmsg %s\ncall-command: execute\nexecute-app-name: %s\nevent-lock: true\n"
                         b"content-type: text/plain\ncontent-length: %d\n\n%s"
                         % (uuid.encode(), app.encode(), len(arg), arg))
        rest = _read(sock, parser, lambda o: False)   # until FreeSWITCH closes after the linger time
        return setup, rest

    fake = ScriptedCallfork(script)
    sw = LeanSwitch()
    sw.c_target("127.0.0.1", fake.server.address[1])
    st = sw.place("1000")
    setup, rest = fake.result.get(timeout=10)
    fake.server.stop()
    assert setup[0].reply_text == "+OK will linger 1 seconds"
    events = [e for e in rest if e.content_type == "text/event-plain"]
    assert [e.name for e in events] == [
        "CHANNEL_EXECUTE", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE", "PLAYBACK_START",
        "PLAYBACK_STOP", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE", "CHANNEL_HANGUP", "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_STATE", "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE"]
    assert events[6].get("Application-Response") == "FILE PLAYED" and events[5].get("Playback-Status") == "done"
    assert events[-1].get("Hangup-Cause") == "USER_BUSY" and events[-1].get("variable_hangup_cause_q850") == "17"
    notices = [e for e in rest if e.content_type == "text/disconnect-notice"]
    assert [n.get("Content-Disposition") for n in notices] == ["linger", "disconnect"]
    assert notices[0].get("Linger-Time") == "1"
    assert st["app"] == "answer" and not st.get("error") and st["cause"] == "USER_BUSY"


def test_what_is_not_modelled_fails_loudly():
    def script(sock, parser):
        sock.sendall(b"connect\n\n")
        _read(sock, parser, lambda o: o)
        sock.sendall(b"api uuid_getvar x y\n\n")
        return _read(sock, parser, lambda o: o)

    fake = ScriptedCallfork(script)
    sw = LeanSwitch()
    sw.c_target("127.0.0.1", fake.server.address[1])
    st = sw.place("1000")
    replies = fake.result.get(timeout=10)
    fake.server.stop()
    assert replies[0].reply_text.startswith("-ERR lean switch does not model")
    assert "uuid_getvar" in st["error"] and sw.not_modelled == 1


def test_calls_through_the_real_service():
    app = AppServer()
    app.start()
    app.document("/answer", "<Response><Speak>x</Speak></Response>")
    sw = LeanSwitch()
    esl = StreamServer(("127.0.0.1", 0), sw.serve_esl)
    esl.start()
    data_dir = Path(tempfile.mkdtemp(prefix="callfork-test-"))
    ports = {name: free_port() for name in ("outbound", "http", "relay")}
    env = {
        "CALLFORK_FREESWITCH_ESL_HOST": "127.0.0.1",
        "CALLFORK_FREESWITCH_ESL_PORT": str(esl.address[1]),
        "CALLFORK_FREESWITCH_ESL_PASSWORD": "ClueCon",
        "CALLFORK_SERVER_OUTBOUND_LISTEN": f"127.0.0.1:{ports['outbound']}",
        "CALLFORK_SERVER_HTTP_LISTEN": f"127.0.0.1:{ports['http']}",
        "CALLFORK_SERVER_RELAY_LISTEN": f"127.0.0.1:{ports['relay']}",
        "CALLFORK_SERVER_PUBLIC_URL": f"http://127.0.0.1:{ports['http']}",
        "CALLFORK_SERVER_DATA_DIR": str(data_dir),
        "CALLFORK_SERVER_AUTH_TOKEN": "test-token",
        "CALLFORK_AUDIO_FORK_FLAVOR": "jambonz",
    }
    config_file = data_dir / "callfork.toml"
    config_file.write_text(f'[[numbers]]\nnumber = "*"\nanswer_url = "{app.url("/answer")}"\n'
                           f'hangup_url = "{app.url("/hangup")}"\n')
    service = Service(load_config(str(config_file), env=env)).start()
    try:
        assert service.control.wait_connected(10)
        sw.c_target("127.0.0.1", ports["outbound"])
        res = sw.c_run("closed", 3, 0.6)
        calls = res["calls"]
        assert len(calls) >= 3
        for c in calls:
            assert c["app"] == "answer" and c["exec"] and c["ended"] and c["cause"] == "NORMAL_CLEARING", c
            assert not c.get("error"), c
        assert sw.not_modelled == 0 and not res["control_errors"], (sw.not_modelled, res["control_errors"])
        assert sw.control_format in ("plain", "json") and sw.control_events == {"BACKGROUND_JOB"}
        uuids = {c["uuid"] for c in calls}
        wait_until(lambda: uuids <= {r.form.get("CallUUID") for r in app.events("Hangup")}, 10)
        wait_until(lambda: not service.calls, 5)
    finally:
        service.stop()
        esl.stop()
        app.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    assert json.dumps(calls)  # plain data, as the benchmark's control plane sends it
