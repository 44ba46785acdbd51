"""The simulator keeps `fsctl pause inbound` as FreeSWITCH 1.10.12 does (what `callfork drain` asks of
the switch): the ESL steps of tests/pause_inbound_truth.py, captured on a real FreeSWITCH
(tests/fixtures/fs-captures/pause-inbound.json), replayed on the simulator over TCP ESL: the replies
of pause, pause_check, resume, a loopback originate that hangs until its originate_timeout while
paused, an existing call that goes on. The SIP answers of the capture (OPTIONS and INVITE: 503
Maximum Calls In Progress, Retry-After 300) are the simulator's refusal of a scripted call."""
import json
import os

import pytest

import pause_inbound_truth
from conftest import CAPTURES
from switch_sim import CallScript
from truth_capture import esl_setting, on_simulator

CAPTURED = json.loads((CAPTURES / "pause-inbound.json").read_text(encoding="utf-8"))["cases"]


def _step(name: str) -> dict:
    return next(step for step in CAPTURED if step["step"] == name)


def test_what_freeswitch_does_in_short():
    assert _step("pause")["reply"] == "+OK\n"
    assert _step("paused: inbound")["reply"] == "true" and _step("before")["reply"] == "false"
    # only inbound: outbound calls (a bridge's sofia legs) are still placed
    assert _step("paused: outbound")["reply"] == "false" and _step("paused: all")["reply"] == "false"
    # a proxy's OPTIONS ping and a new INVITE are both refused: the proxy takes the node out
    for name in ("paused: a proxy's health check", "paused: a new call over SIP"):
        assert _step(name)["status"] == "SIP/2.0 503 Maximum Calls In Progress"
        assert _step(name)["retry_after"] == "300"
    assert _step("resumed: a proxy's health check")["status"] == "SIP/2.0 200 OK"
    # a call over SIP to the paused switch fails at once, as a SIP 503 does
    assert _step("paused: a call over SIP to the switch itself")["reply"] == "-ERR NORMAL_TEMPORARY_FAILURE\n"
    # a loopback originate hangs (its -a leg exists, DOWN) until its originate_timeout, then NO_ANSWER
    stuck = _step("paused: a loopback originate (its -b leg is inbound)")
    assert stuck["reply"] == "-ERR NO_ANSWER\n" and stuck["exists_after_1s"] == "true"
    assert stuck["seconds"] >= 3 and stuck["exists_after_reply"] == "false"
    assert _step("paused: the existing call goes on")["reply"] == "true"
    assert _step("pause again")["reply"] == _step("resume again")["reply"] == "+OK\n"


def test_simulator_matches_freeswitch():
    got = on_simulator(pause_inbound_truth.replay)
    problems = pause_inbound_truth.compare(CAPTURED, got)
    assert not problems, "\n".join(problems)


def test_a_call_to_a_paused_simulator_is_refused_as_freeswitch_refuses_the_invite():
    from switch_sim import Simulator
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    try:
        sim.run_api("fsctl", "pause inbound")
        refused = _step("paused: a new call over SIP")["status"].split(" ", 1)[1]   # "503 Maximum Calls ..."
        with pytest.raises(ValueError, match=refused):
            sim.place_call(CallScript(to="callfork1"))
        assert sim.run_api("sim_call", json.dumps({"to": "callfork1"})).startswith("-ERR " + refused)
        assert not sim.channels
        sim.run_api("fsctl", "resume inbound")
        assert sim.run_api("sim_call", json.dumps({"to": "9999"})).startswith("+OK ")
    finally:
        sim.stop()


@pytest.mark.freeswitch
def test_freeswitch_still_does_what_was_captured():
    """Pauses the whole switch for a few seconds: run under `flock /tmp/callfork-fs.lock`."""
    address, password = esl_setting(os.environ["CALLFORK_FS_ESL"])
    got = pause_inbound_truth.run(address, password, sip=True)
    problems = pause_inbound_truth.compare(CAPTURED, pause_inbound_truth.esl_steps(got), label="FreeSWITCH now")
    sip_now = [(s["step"], s["status"], s["retry_after"]) for s in got if "sip" in s]
    assert sip_now == [(s["step"], s["status"], s["retry_after"]) for s in CAPTURED if "sip" in s]
    assert not problems, "\n".join(problems)


def test_a_bridge_to_loopback_on_a_paused_simulator_gets_no_answer():
    """As the loopback originate of the capture: the -a leg exists but never rings (its inbound -b
    leg cannot be created), so the bridge ends by its timeout as for a callee that never answers
    (originate_timeout: NO_ANSWER, tests/fixtures/fs-captures/bridge.md)."""
    from switch_sim import Simulator
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    try:
        sim.run_api("fsctl", "pause inbound")
        caller = sim.create_channel(direction="outbound", destination="x", answer_first=True,
                                    dialplan=[("bridge", "{originate_timeout=1}loopback/9999/default")])
        assert caller.gone.wait(10)
        assert caller.get_variable("originate_disposition") == "NO_ANSWER"
        assert not any("-b" in ch.name for ch in sim.channels.values())
    finally:
        sim.stop()
