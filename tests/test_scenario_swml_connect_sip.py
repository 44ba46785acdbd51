"""SWML connect to a sip: URI (verbs/swml/connect_dial.py), end to end: the caller is handed to a
SIP callee, the connect's `headers` go on the INVITE under their own names, the leg's
calling.call.state webhooks (device type `sip`) arrive in order, and the document goes on after
the connect with vars.connect_result / connect_failed_reason set (docs/decisions.md, SWML connect).

On a real FreeSWITCH (marked `freeswitch`) the callee is tests/sip_phone.py's phone on a free UDP
port, reached through callfork's default `[freeswitch] sip_dialstring` (`sofia/internal/{uri}`), as
in tests/test_scenario_twiml_sip.py; on the simulator it is its scripted SIP far end (`sim_callee`,
switch_sim/callees.py). The caller (tests/dial_support.py) speaks CALLER_HZ, the callee CALLEE_HZ.
A number in a parallel connect is another number of the same callfork (dial_support.dial_stack)
whose document never answers.

What the document did after the connect is seen in one place: it transfers to the URL /after with
params naming the switch case that ran (`result`, `reason`), so the POST tells connect_result and
connect_failed_reason apart, and when it came tells that it ran only once the connect was over.
"""
import json
import time

import pytest

from dial_support import CALLEE_HZ, CALLER_HZ, dial_stack
from sip_phone import SipPhone
from stream_scenarios import Calls, tone, wait_until, windows_with, write_wav

ALL_STATES = ["created", "ringing", "answered", "ended"]
HEADERS = [{"name": "X-Ticket", "value": "42"}, {"name": "x-FROM_NUMBER", "value": "+15550002222"}]
SIM_URI = "sip:agent@example.com"
REASONS = ("USER_BUSY", "NO_ANSWER")


def _after_connect(after_url):
    """The methods after a connect: a transfer to `after_url` whose params name the case that ran."""
    def to_after(**params):
        return [{"transfer": {"dest": after_url, "params": params}}]
    on_failure = {"switch": {"variable": "connect_failed_reason",
                             "case": {r: to_after(result="failed", reason=r) for r in REASONS},
                             "default": to_after(result="failed", reason="other")}}
    return [{"switch": {"variable": "vars.connect_result",
                        "case": {"connected": to_after(result="connected", reason="none"),
                                 "failed": [on_failure]},
                        "default": to_after(result="unset", reason="none")}},
            {"hangup": {"reason": "decline"}}]     # never runs: the transfer replaces the document


def _document(calls, connect):
    return json.dumps({"version": "1.0.0",
                       "sections": {"main": [{"connect": connect}] + _after_connect(calls.url("/after"))}})


def _states(stack):
    return [json.loads(r.body) for r in list(stack.app.requests) if r.path == "/call-state"]


def _wait_states(stack, done, timeout=30):
    """The call-state bodies once `done(bodies)` holds."""
    assert stack.app.wait_for(lambda: done(_states(stack)), timeout), \
        [(b["params"]["device"], b["params"]["call_state"]) for b in _states(stack)]
    return _states(stack)


def _ended_for(to):
    return lambda bodies: any(b["params"]["call_state"] == "ended" and _to(b) == to for b in bodies)


def _to(body):
    params = body["params"]["device"]["params"]
    return params.get("to", params.get("to_number"))


def _after(stack, timeout=40):
    (req,) = stack.app.wait_path("/after", timeout=timeout)
    return req.form, time.monotonic()


def _caller_hangup(stack, p, timeout=30):
    def find():
        return [r.form for r in list(stack.app.requests) if r.path == "/hangup" and r.form.get("To") == p + "1"]
    assert stack.app.wait_for(find, timeout), "no Hangup webhook for the caller"
    return find()[0]


def _check_connected_states(bodies, uri, a_uuid, real):
    states = [b["params"]["call_state"] for b in bodies]
    # the phone sends 180 Ringing: on FreeSWITCH a progress event, so `ringing` is there
    assert states == ALL_STATES if real else states in (ALL_STATES, ["created", "answered", "ended"]), states
    for body in bodies:
        assert body["event_type"] == "calling.call.state" and body["event_channel"] == f"swml:{a_uuid}"
        params = body["params"]
        assert params["device"] == {"type": "sip", "params": {"from": "15550001111", "to": uri}}
        assert params["parent"]["call_id"] == a_uuid and params["direction"] == "outbound"
        assert params["call_id"] == bodies[0]["params"]["call_id"] != a_uuid
    answered, ended = bodies[-2]["params"], bodies[-1]["params"]
    assert answered["answer_time"] > 0 and ended["peer"] == {"call_id": a_uuid, "node_id": a_uuid}
    assert ended["end_reason"] == "hangup"
    assert 3000 <= ended["end_time"] - ended["answer_time"] <= 20000


def _connect(uri, **more):
    return {"to": uri, "from": "15550001111", "call_state_url": "CS", "call_state_events": ALL_STATES, **more}


def _with_cs(calls, connect):
    return {k: calls.url("/call-state") if v == "CS" else v for k, v in connect.items()}


def _setup_connect(stack, p, connect):
    calls = Calls(stack)
    stack.app.document("/after", json.dumps({"version": "1.0.0", "sections": {"main": [{"hangup": {}}]}}),
                       "application/json")
    calls.add(p + "1", _document(calls, _with_cs(calls, connect)), "application/json")
    return calls


# -- on a real FreeSWITCH, with a SIP phone ------------------------------------------------------

@pytest.mark.freeswitch
def test_connect_to_a_sip_phone_with_headers_each_side_hears_the_other_and_the_document_goes_on(tmp_path):
    with SipPhone(answer="answer", answer_after=1.0, tone_hz=CALLEE_HZ) as phone:
        stack, p = dial_stack(True)
        with stack:
            _setup_connect(stack, p, _connect(phone.uri, headers=HEADERS))
            caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 60.0))
            call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=60)
            sip = phone.wait_call(30)
            # the phone hears the caller (4 s of its tone): now the callee hangs up
            phone.wait(lambda: windows_with(sip.heard(), CALLER_HZ) >= 40, 20, "4 s of the caller's tone")
            bye = phone.hang_up(sip)
            bye_at = time.monotonic()
            after, after_at = _after(stack)
            hangup = _caller_hangup(stack, p)
            heard = call.heard()
            bodies = _wait_states(stack, _ended_for(phone.uri))

    # the INVITE: the URI dialled, the caller id, the headers under their own names
    assert sip.invite.uri == phone.uri and sip.header("To") == f"<{phone.uri}>"
    assert sip.header("From").startswith("<sip:15550001111@")
    assert sip.header("X-Ticket") == "42" and sip.header("x-FROM_NUMBER") == "+15550002222"
    assert bye is not None and bye.status == 200
    # the document went on once the phone hung up (the caller would have stayed 60 s)
    assert after["result"] == "connected" and after["reason"] == "none", after
    assert after_at - bye_at < 10
    assert hangup["HangupCause"] == "NORMAL_CLEARING" and int(hangup["Duration"]) < 40, hangup
    _check_connected_states(bodies, phone.uri, hangup["CallUUID"], real=True)
    assert windows_with(heard, CALLEE_HZ) >= 30, windows_with(heard, CALLEE_HZ)


@pytest.mark.freeswitch
@pytest.mark.parametrize("answer, reason, end_reason", [("busy", "USER_BUSY", "busy"),
                                                        ("never", "NO_ANSWER", "noAnswer")])
def test_connect_to_a_busy_or_silent_sip_phone_fails_and_the_document_goes_on(tmp_path, answer, reason, end_reason):
    with SipPhone(answer=answer) as phone:
        stack, p = dial_stack(True)
        with stack:
            _setup_connect(stack, p, _connect(phone.uri, timeout=3, headers=HEADERS))
            caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
            stack.call(to="1", audio=str(caller_wav), hangup_after=40)
            after, _at = _after(stack)
            hangup = _caller_hangup(stack, p)
            bodies = _wait_states(stack, _ended_for(phone.uri))
            sip = phone.wait_call(1)
            phone.wait(lambda: "ACK" in sip.requests, 5, "the ACK of the final response")

    assert sip.header("X-Ticket") == "42"
    if answer == "busy":
        assert sip.state == "refused"
    else:   # rang out: the switch CANCELs the INVITE at the timeout
        assert "CANCEL" in sip.requests and "BYE" not in sip.requests and sip.state == "cancelled"
    assert after["result"] == "failed" and after["reason"] == reason, after
    assert int(hangup["Duration"]) < 15, hangup
    states = [b["params"]["call_state"] for b in bodies]
    assert states in (["created", "ended"], ["created", "ringing", "ended"]), states
    ended = bodies[-1]["params"]
    assert ended["end_reason"] == end_reason and ended["answer_time"] == 0 and "peer" not in ended
    if answer == "never":
        assert 2500 <= ended["end_time"] - ended["start_time"] <= 6000


@pytest.mark.freeswitch
def test_connect_parallel_to_a_sip_phone_and_a_number_connects_the_phone_and_cancels_the_number(tmp_path):
    with SipPhone(answer="answer", answer_after=1.0, tone_hz=CALLEE_HZ) as phone:
        stack, p = dial_stack(True)
        with stack:
            calls = _setup_connect(stack, p, {"parallel": [{"to": "81"}, {"to": phone.uri}], "from": "15550001111",
                                              "call_state_url": "CS", "call_state_events": ALL_STATES})
            calls.add(p + "81", '<Response><Wait length="30"/></Response>')
            caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 60.0))
            call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=60)
            sip = phone.wait_call(30)
            phone.wait(lambda: windows_with(sip.heard(), CALLER_HZ) >= 30, 20, "3 s of the caller's tone")
            phone.hang_up(sip)
            after, _at = _after(stack)
            hangup = _caller_hangup(stack, p)
            heard = call.heard()
            bodies = _wait_states(stack, lambda b: _ended_for(phone.uri)(b) and _ended_for("81")(b))

    assert after["result"] == "connected", after
    winner = [b for b in bodies if _to(b) == phone.uri]
    loser = [b["params"] for b in bodies if _to(b) == "81"]
    _check_connected_states(winner, phone.uri, hangup["CallUUID"], real=True)
    assert [s["call_state"] for s in loser] in (["created", "ended"], ["created", "ringing", "ended"]), loser
    assert loser[-1]["end_reason"] == "cancel" and loser[-1]["answer_time"] == 0 and "peer" not in loser[-1]
    assert loser[0]["device"]["type"] == "phone"
    assert windows_with(heard, CALLEE_HZ) >= 20, windows_with(heard, CALLEE_HZ)


# -- on the simulator, with its scripted SIP callee ----------------------------------------------

def _sim_callee(stack, **spec):
    reply = stack.sim.run_api("sim_callee", json.dumps({"match": SIM_URI, **spec}))
    assert reply.startswith("+OK"), reply
    return reply.split()[1]


def _sim_leg_while_up(stack):
    """The B leg's channel variables, read while it is bridged (its `answered` webhook came)."""
    answered = wait_until(lambda: [b for b in _states(stack) if b["params"]["call_state"] == "answered"
                                   and _to(b) == SIM_URI], 20, "the leg's answered state")
    leg = stack.sim.get_channel(answered[0]["params"]["call_id"])
    return leg, dict(leg.variables)


def test_sim_connect_to_a_sip_uri_with_headers_each_side_hears_the_other_and_the_document_goes_on(tmp_path):
    from switch_sim.callees import heard as callee_heard
    stack, p = dial_stack(False)
    with stack:
        callee = _sim_callee(stack, answer_after=0.5, hangup_after=5, keep_heard=True,
                             audio=str(write_wav(tmp_path / "callee.wav", tone(CALLEE_HZ, 5.0))))
        _setup_connect(stack, p, _connect(SIM_URI, headers=HEADERS))
        call = stack.call(to="1", audio=str(write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 30.0))),
                          keep_heard=True, hangup_after=30)
        leg, leg_vars = _sim_leg_while_up(stack)
        after, _at = _after(stack)
        hangup = _caller_hangup(stack, p)
        call.wait(30)
        heard = call.heard()
        bodies = _wait_states(stack, _ended_for(SIM_URI))
        callee_got = callee_heard(stack.sim, callee)

    assert leg.name == "sofia/internal/agent@example.com"        # named as FreeSWITCH names it: no sip:
    assert leg_vars["sip_h_X-Ticket"] == "42" and leg_vars["sip_h_x-FROM_NUMBER"] == "+15550002222"
    assert after["result"] == "connected" and after["reason"] == "none", after
    assert int(hangup["Duration"]) < 20, hangup            # the callee's hang-up, not the caller's 30 s
    _check_connected_states(bodies, SIM_URI, hangup["CallUUID"], real=False)
    assert windows_with(heard, CALLEE_HZ) >= 30, windows_with(heard, CALLEE_HZ)
    assert windows_with(callee_got, CALLER_HZ) >= 30, windows_with(callee_got, CALLER_HZ)


@pytest.mark.parametrize("spec, reason, end_reason", [({"reject": "USER_BUSY"}, "USER_BUSY", "busy"),
                                                      ({"answer_after": None}, "NO_ANSWER", "noAnswer")])
def test_sim_connect_to_a_busy_or_silent_sip_uri_fails_and_the_document_goes_on(tmp_path, spec, reason, end_reason):
    stack, p = dial_stack(False)
    with stack:
        _sim_callee(stack, **spec)
        _setup_connect(stack, p, _connect(SIM_URI, timeout=3, headers=HEADERS))
        stack.call(to="1", audio=str(write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))), hangup_after=30)
        after, _at = _after(stack)
        hangup = _caller_hangup(stack, p)
        bodies = _wait_states(stack, _ended_for(SIM_URI))
    assert after["result"] == "failed" and after["reason"] == reason, after
    assert int(hangup["Duration"]) < 15, hangup
    states = [b["params"]["call_state"] for b in bodies]
    assert states in (["created", "ended"], ["created", "ringing", "ended"]), states
    ended = bodies[-1]["params"]
    assert ended["end_reason"] == end_reason and ended["answer_time"] == 0 and "peer" not in ended


def test_sim_connect_parallel_to_a_sip_uri_and_a_number_connects_the_uri_and_cancels_the_number(tmp_path):
    stack, p = dial_stack(False)
    with stack:
        _sim_callee(stack, answer_after=1.0, hangup_after=4,
                    audio=str(write_wav(tmp_path / "callee.wav", tone(CALLEE_HZ, 4.0))))
        calls = _setup_connect(stack, p, {"parallel": [{"to": "81"}, {"to": SIM_URI}], "from": "15550001111",
                                          "call_state_url": "CS", "call_state_events": ALL_STATES})
        calls.add(p + "81", '<Response><Wait length="30"/></Response>')
        call = stack.call(to="1", audio=str(write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 30.0))),
                          keep_heard=True, hangup_after=30)
        after, _at = _after(stack)
        hangup = _caller_hangup(stack, p)
        call.wait(30)
        heard = call.heard()
        bodies = _wait_states(stack, lambda b: _ended_for(SIM_URI)(b) and _ended_for("81")(b))

    assert after["result"] == "connected", after
    winner = [b for b in bodies if _to(b) == SIM_URI]
    loser = [b["params"] for b in bodies if _to(b) == "81"]
    _check_connected_states(winner, SIM_URI, hangup["CallUUID"], real=False)
    assert [s["call_state"] for s in loser] in (["created", "ended"], ["created", "ringing", "ended"]), loser
    assert loser[-1]["end_reason"] == "cancel" and loser[-1]["answer_time"] == 0 and "peer" not in loser[-1]
    assert windows_with(heard, CALLEE_HZ) >= 20, windows_with(heard, CALLEE_HZ)
