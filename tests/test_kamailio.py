"""deploy/kamailio: Kamailio's dispatcher in front of several FreeSWITCH nodes.

The configuration passes `kamailio -c`; a real Kamailio (tests/kamailio_support.py) spreads calls
over two SIP nodes by a hash of the Call-ID (a Call-ID always lands on the same node), takes a node
out of the set when its OPTIONS pings are answered as a draining (paused) FreeSWITCH answers them
(503 Maximum Calls In Progress, tests/fixtures/fs-captures/pause-inbound.json) or not at all, puts it
back when it answers 200 again, and sends an INVITE a node refuses with 503 to the other node. On a
real FreeSWITCH 1.10.12 (marked `freeswitch`, under `flock /tmp/callfork-fs.lock`: it binds 8084
and pauses the switch): a call from the switch through Kamailio back to it reaches callfork's
document and the caller hears it; once callfork drained, Kamailio's pings get 503 and a new call
through Kamailio is refused by Kamailio itself (no node takes calls).
"""
import json
import os
import subprocess
import uuid as uuidlib

import numpy as np
import soundfile

from conftest import CAPTURES
from kamailio_support import (CONFIG, DRAINING_PING_ANSWER, FakeNode, Kamailio, kamailio_binary,
                              send_invite)
from waiting import wait_until, wav_complete

import pytest

DISPATCHER_LIST = CONFIG.parent / "dispatcher.list"


def test_the_configuration_passes_kamailio_check():
    for extra in ([], ["-A", "WITH_CTL"], ["-A", "LISTEN=udp:127.0.0.1:5070"]):
        out = subprocess.run([kamailio_binary(), "-c", "-f", str(CONFIG), "-A", f'DISPATCHER_LIST="{DISPATCHER_LIST}"']
                             + extra, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "config file ok" in out.stdout + out.stderr, out.stdout + out.stderr


def test_the_draining_answer_is_what_a_paused_freeswitch_answers():
    captured = json.loads((CAPTURES / "pause-inbound.json").read_text(encoding="utf-8"))["cases"]
    ping = next(s for s in captured if s["step"] == "paused: a proxy's health check")
    assert ping["status"] == "SIP/2.0 " + DRAINING_PING_ANSWER


def _landing(kam, nodes, call_id: str) -> str:
    """Which node an INVITE with this Call-ID reached ("a", "b"), by the node that saw it."""
    before = {name: len(node.invites) for name, node in nodes.items()}
    assert send_invite(kam.address, call_id) == 486, kam.output()
    got = [name for name, node in nodes.items() if call_id in node.invites[before[name]:]]
    assert len(got) == 1, got
    return got[0]


def test_calls_spread_by_call_id_and_a_draining_or_dead_node_leaves_the_set():
    nodes = {"a": FakeNode(), "b": FakeNode()}
    try:
        with Kamailio([nodes["a"].uri, nodes["b"].uri]) as kam:
            wait_until(lambda: all(n.pings for n in nodes.values()), 10, "both nodes pinged")
            assert {kam.states()[n.uri][0] for n in nodes.values()} == {"A"}
            ids = [uuidlib.uuid4().hex for _ in range(24)]
            placed = {call_id: _landing(kam, nodes, call_id) for call_id in ids}
            assert set(placed.values()) == {"a", "b"}, placed          # both nodes take calls
            for call_id in ids[:6]:                                     # the same Call-ID, the same node
                assert _landing(kam, nodes, call_id) == placed[call_id]
            on_b = next(call_id for call_id in ids if placed[call_id] == "b")

            # b drains: its pings get 503, it leaves the set; every call goes to a
            seen = len(nodes["b"].pings)
            nodes["b"].ping = "draining"
            wait_until(lambda: nodes["b"].pinged_since(seen, "draining"), 10, "a ping answered 503")
            wait_until(lambda: kam.states()[nodes["b"].uri].startswith("I"), 10, "b out of the set")
            assert kam.states()[nodes["a"].uri].startswith("A")
            assert {_landing(kam, nodes, call_id) for call_id in ids} == {"a"}

            # b takes calls again: back in the set, its calls go to it again
            seen = len(nodes["b"].pings)
            nodes["b"].ping = "ok"
            wait_until(lambda: nodes["b"].pinged_since(seen, "ok"), 10, "a ping answered 200")
            wait_until(lambda: kam.states()[nodes["b"].uri].startswith("A"), 10, "b back in the set")
            assert _landing(kam, nodes, on_b) == "b"

            # an INVITE b refuses with 503 (paused before its next ping shows it) goes to a
            nodes["b"].refuse_invites = True
            before = {name: len(node.invites) for name, node in nodes.items()}
            assert send_invite(kam.address, on_b) == 486                # a's answer reached the caller
            assert [n.invites[before[name]:] for name, n in nodes.items()] == [[on_b], [on_b]]
            nodes["b"].refuse_invites = False

            # b stops answering altogether (a dead node): out once a ping has timed out
            wait_until(lambda: kam.states()[nodes["b"].uri].startswith("A"), 10, "b back after the failover")
            nodes["b"].ping = "down"
            wait_until(lambda: kam.states()[nodes["b"].uri].startswith("I"), 30, "a dead b out of the set")
            assert kam.states()[nodes["a"].uri].startswith("A")
            assert _landing(kam, nodes, on_b) == "a"

            # no node takes calls: Kamailio answers 503 itself
            nodes["a"].ping = "draining"
            seen = len(nodes["a"].pings)
            wait_until(lambda: nodes["a"].pinged_since(seen, "draining"), 10, "a's ping answered 503")
            wait_until(lambda: send_invite(kam.address, uuidlib.uuid4().hex) == 503, 10, "no node left")
            assert "no FreeSWITCH node takes calls now" in kam.output()
    finally:
        for node in nodes.values():
            node.close()


# the freeswitch-test configuration's directory users (/work/shared/freeswitch-test/configure-fs.sh:
# default_password): the switch challenges an INVITE from Kamailio's address, as from anyone
SIP_USER, SIP_PASSWORD = "1000", "callfork-test-pw"
DOCUMENT = '<Response><Speak>Hello from callfork, through Kamailio.</Speak><Wait length="2"/></Response>'


@pytest.mark.freeswitch
def test_a_call_through_kamailio_reaches_callfork_on_freeswitch(tmp_path):
    from http_receiver import HttpReceiver, Reply
    from pause_inbound_truth import _api
    from serve_support import ServeProcess, number_table, serve_ports, write_serve_config
    from truth_capture import esl_connect, esl_setting

    address, password = esl_setting(os.environ["CALLFORK_FS_ESL"])
    app = HttpReceiver(lambda req: Reply(body=DOCUMENT.encode(), content_type="application/xml")
                       if req.path == "/answer" else Reply()).start()
    ports = dict(serve_ports(), esl=address[1], outbound=8084)
    config = write_serve_config(tmp_path / "callfork.toml", ports,
                                number_table(app.url("/answer"), app.url("/hangup")))
    config.write_text(config.read_text().replace("[freeswitch]\n", f"[freeswitch]\nesl_password = \"{password}\"\n"))
    heard = tmp_path / "heard.wav"
    esl = esl_connect(address, password)
    caller, refused = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    node = None
    try:
        with Kamailio([f"sip:{address[0]}:5060"]) as kam:
            node = ServeProcess(config, ports["http"])
            node.start()
            dial = (f"{{origination_uuid=UUID,sip_auth_username={SIP_USER},sip_auth_password={SIP_PASSWORD},"
                    f"originate_timeout=10}}sofia/internal/sip:callfork1000@127.0.0.1:{kam.port}")
            # the caller: a channel of the switch that dials Kamailio and records what it hears
            _api(esl, f"bgapi originate {dial.replace('UUID', caller)} &record({heard} 4)")
            wait_until(lambda: [r for r in app.requests if r.path == "/answer"], 20, "the answer webhook")
            answer = next(r for r in app.requests if r.path == "/answer")
            assert answer.form["To"] == "callfork1000", answer.form
            assert f"FreeSWITCH node sip:{address[0]}:5060" in kam.output()
            wait_until(lambda: wav_complete(heard), 20, "the caller's recording")
            audio, rate = soundfile.read(str(heard), dtype="int16")
            rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
            assert rms > 300, f"the caller heard nothing (RMS {rms:.0f})"
            wait_until(lambda: [r for r in app.requests if r.path == "/hangup"], 20, "the hangup webhook")

            # callfork drains (no call left: it exits), the switch stays paused, Kamailio's pings get
            # 503 and the node leaves the set: a new call through Kamailio is refused by Kamailio
            assert requests_post(node.http_url + "/api/v1/ops/drain").status_code == 202
            assert node.proc.wait(20) == 0, node.output()
            fs_uri = f"sip:{address[0]}:5060"
            wait_until(lambda: kam.states()[fs_uri].startswith("I"), 15, "the drained node out of the set")
            reply = _api(esl, f"originate {dial.replace('UUID', refused)} &park()")
            assert reply.startswith("-ERR"), reply
            assert "no FreeSWITCH node takes calls now" in kam.output()
    finally:
        try:
            if node is not None:
                node.stop()
            _api(esl, f"uuid_kill {caller}")
        finally:
            _api(esl, "fsctl resume inbound")
            paused = _api(esl, "fsctl pause_check inbound")
            esl.close()
            app.stop()
        assert paused == "false", "FreeSWITCH is still paused"


def requests_post(url: str):
    import requests
    return requests.post(url, headers={"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "test-token"}, timeout=5)
