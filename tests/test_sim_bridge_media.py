"""The simulator's bridge carries media both ways, and its callees: a scripted caller (600 Hz) is
bridged to a `sim_callee` (1000 Hz); the caller must hear the callee and the callee the caller, and
a mod_audio_fork bug on the A-leg with stereo mix must get the caller on the left and the callee on
the right (what FreeSWITCH's bugs see: the A-leg reads the caller and writes the callee). Also:
what the callee script gives (busy, never answering, hanging up), unmatched endpoints, and a
loopback B-leg to a callfork number reaching the outbound socket as its -b leg.
"""
import json
import socket

import numpy as np
import soundfile

from fork_ws_server import start_server
from switch_sim import CallScript, Simulator
from switch_sim.caller import CallerModel
from switch_sim.callees import heard
from waiting import wait_until

RATE = 8000


def tone_wav(path, hz, seconds=6.0):
    t = np.arange(int(RATE * seconds)) / RATE
    soundfile.write(str(path), (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16), RATE, subtype="PCM_16")
    return str(path)


def dominant_hz(samples: np.ndarray) -> int:
    """The strongest frequency of a stretch of audio (0 when it is near silence), to 10 Hz."""
    x = samples.astype(np.float64)
    if len(x) < 800 or np.sqrt(np.mean(x ** 2)) < 200:
        return 0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return int(round(np.argmax(spectrum) * RATE / len(x) / 10.0) * 10)


def caller_channel(sim, dial, audio=None, variables=None):
    """A scripted caller that answers, runs `bridge <dial>` (what callfork's <Dial> sends), then parks."""
    script = CallScript(to="5551000", audio=audio, keep_heard=True)
    caller = CallerModel.from_script(script)
    apps = [("answer", "")] + [("set", f"{k}={v}") for k, v in (variables or {}).items()] + [("bridge", dial), ("park", "")]
    ch = sim.create_channel(direction="inbound", caller_number="15551230001", destination="5551000",
                            dialplan=apps, caller=caller)
    return ch, caller


def bridged_to(ch):
    return wait_until(lambda: ch.get_variable("bridge_uuid"), 5, "the bridge")


def test_caller_and_callee_hear_each_other_and_a_stereo_fork_gets_both(tmp_path):
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    ws = start_server()
    try:
        reply = sim.run_api("sim_callee", json.dumps({"match": "15557654321", "answer_after": 0.2,
                                                      "audio": tone_wav(tmp_path / "callee.wav", 1000),
                                                      "keep_heard": True}))
        assert reply.startswith("+OK callee-"), reply
        callee_id = reply.split()[1]
        a, caller = caller_channel(sim, "[origination_uuid=b-1]sofia/gateway/carrier/15557654321",
                                   audio=tone_wav(tmp_path / "caller.wav", 600),
                                   variables={"hangup_after_bridge": "true"})
        assert bridged_to(a) == "b-1"
        assert sim.run_api("uuid_audio_fork", f"{a.uuid} start {ws.url('/fork')} stereo 8k").startswith("+OK")
        conn = ws.wait_connection()
        assert conn is not None
        wait_until(lambda: len(conn.binaries) >= 60, 10, "two seconds of forked audio")
        b = sim.get_channel("b-1")
        sim.run_api("uuid_kill", "b-1")
        a.gone.wait(5)
        assert a.hangup_cause == "NORMAL_CLEARING"          # hangup_after_bridge: the B-leg's cause
        assert b.hangup_cause == "NORMAL_CLEARING"
        heard_by_caller = caller.heard_samples()
        assert dominant_hz(heard_by_caller[-RATE:]) == 1000
        heard_by_callee = heard(sim, callee_id)
        assert dominant_hz(heard_by_callee[-RATE:]) == 600
        stereo = np.frombuffer(b"".join(d for _t, d in conn.binaries[-50:]), dtype="<i2")
        assert dominant_hz(stereo[0::2]) == 600              # left: what the A-leg reads (the caller)
        assert dominant_hz(stereo[1::2]) == 1000             # right: what it writes (the callee)
    finally:
        ws.stop()
        sim.stop()


def test_callee_scripts_and_unmatched_endpoints():
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    try:
        sim.run_api("sim_callee", json.dumps({"match": "busy", "reject": "USER_BUSY"}))
        sim.run_api("sim_callee", json.dumps({"match": "never"}))
        a, _c = caller_channel(sim, "sofia/internal/sip:busy@10.0.0.1", variables={"continue_on_fail": "true"})
        wait_until(lambda: a.get_variable("originate_disposition"), 5, "the originate")
        assert (a.get_variable("originate_disposition"), a.get_variable("DIALSTATUS")) == ("USER_BUSY", "BUSY")
        a2, _c = caller_channel(sim, "[leg_timeout=1]user/never", variables={"continue_on_fail": "true"})
        wait_until(lambda: a2.get_variable("originate_disposition"), 5, "the leg timeout")
        assert a2.get_variable("originate_disposition") == "ALLOTTED_TIMEOUT"
        a3, _c = caller_channel(sim, "sofia/gateway/nosuch/15550001111")
        a3.gone.wait(5)
        assert a3.get_variable("originate_disposition") == "INVALID_GATEWAY"
        assert a3.hangup_cause == "INVALID_GATEWAY"        # no continue_on_fail: the A-leg is hung up
        a4, _c = caller_channel(sim, "user/nobody|sofia/internal/sip:nobody@10.0.0.1",
                                variables={"continue_on_fail": "true"})
        wait_until(lambda: a4.get_variable("originate_disposition"), 5, "the failover")
        assert a4.get_variable("originate_disposition") == "NORMAL_TEMPORARY_FAILURE"
        wait_until(lambda: a4.parked, 5, "the caller going on after the failed bridge")
        assert not a4.hungup
    finally:
        sim.stop()


def test_a_loopback_leg_to_a_callfork_number_reaches_the_outbound_socket():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sim = Simulator(socket_target=listener.getsockname()).start()
    try:
        a, _c = caller_channel(sim, "[origination_uuid=b-2,origination_caller_id_number=15550009999]"
                                    "loopback/callfork77/default")
        listener.settimeout(5)
        conn, _addr = listener.accept()
        conn.settimeout(5)
        conn.sendall(b"connect\n\n")
        data = b""
        while b"Channel-Name" not in data or not data.endswith(b"\n\n"):
            data += conn.recv(65536)
        text = data.decode()
        assert "Channel-Name: loopback/callfork77-b" in text
        assert "Caller-Destination-Number: callfork77" in text
        assert "Caller-Caller-ID-Number: 15550009999" in text
        b = sim.get_channel("b-2")
        assert b is not None and b.name == "loopback/callfork77-a"
        conn.close()
        sim.run_api("uuid_kill", a.uuid)
        b.gone.wait(5)
        assert b.hangup_cause in ("ORIGINATOR_CANCEL", "NORMAL_CLEARING")
    finally:
        listener.close()
        sim.stop()


def test_digits_cross_a_loopback_pair_and_group_confirm_key_picks_the_leg_that_presses_it():
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    try:
        # uuid_send_dtmf on a loopback leg: its partner receives the digit (FreeSWITCH's reply text)
        a, _c = caller_channel(sim, "[origination_uuid=b-3]loopback/m:^:answer^read:1 1 x got 5000 #/default/inline")
        assert bridged_to(a) == "b-3"
        b = sim.get_channel("b-3")
        assert sim.run_api("uuid_send_dtmf", "b-3 5") == "+OK b-3 sent DTMF 5.\n"
        wait_until(lambda: b.partner.get_variable("got") == "5", 5, "the digit at the -b leg")
        sim.run_api("uuid_kill", a.uuid)
        # two callees answer; only the one that presses the confirm key is connected
        a2, _c = caller_channel(sim, "{group_confirm_key=5}"
                                     "[origination_uuid=w-1]loopback/m:^:answer^send_dtmf:2^park/default/inline,"
                                     "[origination_uuid=w-2]loopback/m:^:answer^sleep:300^send_dtmf:5^park/default/inline")
        assert bridged_to(a2) == "w-2"
        wait_until(lambda: sim.get_channel("w-1") is None, 5, "the loser gone")
        assert a2.get_variable("originate_causes") == "ARRAY::w-1;LOSE_RACE|:w-2;NONE"
    finally:
        sim.stop()


def test_a_read_displace_on_the_a_leg_reaches_the_callee(tmp_path):
    """uuid_displace's `r` flag on the A-leg replaces what it reads, so the bridged callee hears the
    file instead of the caller (and the caller hears 0xFFFF samples: near silence)."""
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    try:
        reply = sim.run_api("sim_callee", json.dumps({"match": "15557654322", "answer_after": 0,
                                                      "audio": tone_wav(tmp_path / "callee.wav", 1000),
                                                      "keep_heard": True}))
        callee_id = reply.split()[1]
        a, caller = caller_channel(sim, "sofia/gateway/carrier/15557654322",
                                   audio=tone_wav(tmp_path / "caller.wav", 600))
        bridged_to(a)
        callee = heard(sim, callee_id)
        start_heard, start_caller = len(callee), len(caller.heard_samples())
        reply = sim.run_api("uuid_displace", f"{a.uuid} start tone_stream://%(1000,0,1500);loops=-1 0 r")
        assert reply == "+OK Success\n"
        wait_until(lambda: len(heard(sim, callee_id)) - start_heard >= RATE, 5, "a second heard by the callee")
        assert dominant_hz(heard(sim, callee_id)[-RATE // 2:]) == 1500
        assert dominant_hz(caller.heard_samples()[start_caller + RATE // 5:]) == 0
        sim.run_api("uuid_kill", a.uuid)
    finally:
        sim.stop()
