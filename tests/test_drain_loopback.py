"""Loopback channels while this node's drain keeps the switch paused (callfork/drain.py,
docs/cluster.md): `fsctl pause inbound` stops FreeSWITCH creating inbound channels, and mod_loopback's
second leg is one, so a leg to `loopback/...` would ring for its whole timeout
(tests/fixtures/fs-captures/pause-inbound.json; the simulator models it: switch_sim/loopback.py).
callfork does not dial it: a <Dial> whose legs are all loopback ends at once with DialStatus failed
(Vobiz, and TwiML's DialCallStatus through the same Dialer), logged with the call's UUID; a Dial that
also has a `sofia/...` leg rings that one, which works during the drain; a conference Speak to chosen
members (rendered by a helper loopback channel) answers 503 with a message, while Speak to `all`
(no helper) is queued; so does a REST Speak to the caller of a bridged call (rendered the same way),
while one to the callee is queued.

A live call is drained under (Service.drain, in-process), then sent to the Dial documents by a
REST transfer. The real-switch test pauses the whole switch: run it under
`flock /tmp/callfork-fs.lock`; it resumes the switch in a `finally`."""
import json
import logging
import time

import pytest
import requests

from dial_support import dial_stack
from harness import Stack
from waiting import wait_until

WAIT_LONG = "<Response><Speak>Hello.</Speak><Wait length=\"120\"/></Response>"   # (Speak answers the call)
RING_S = 30   # the Dial's timeout: a loopback leg that waited for it would take this long


def _live_call(stack, to="1000"):
    call = stack.call(to=to, hangup_after=90)
    wait_until(lambda: stack.service.calls, 15, "the call live in callfork")
    return call, next(iter(stack.service.calls))


def _drain(stack):
    stack.service.drain.start()
    wait_until(lambda: stack.service.drain.freeswitch_paused, 10, "FreeSWITCH paused by the drain")


def _transfer(stack, uuid, url):
    resp = requests.post(stack.api_url(f"/Call/{uuid}/"), headers=stack.api_headers(), timeout=10,
                         json={"aleg_url": url})
    assert resp.status_code == 202, resp.text


def _timed_action(stack, path, since):
    """The action request at `path` (waited for well inside the Dial's timeout), and how long after
    `since` it came."""
    got = stack.app.wait_path(path, timeout=RING_S / 3)[0]
    return got.form, got.received_at - since


def test_a_vobiz_dial_to_loopback_fails_at_once_during_a_drain_and_a_sip_leg_still_rings(caplog):
    stack, _prefix = dial_stack(False)
    with stack, caplog.at_level(logging.WARNING, logger="callfork.dial"):
        stack.app.document("/answer", WAIT_LONG)
        stack.app.document("/loop", f'<Response><Dial action="{stack.app.url("/loop-action")}" timeout="{RING_S}">'
                                    f'<Number>2000</Number></Dial></Response>')
        # after the failed dial: a Dial with a loopback leg and a SIP leg; only the SIP leg is dialled
        stack.app.document("/loop-action", f'<Response><Dial action="{stack.app.url("/mixed-action")}" '
                                           f'timeout="{RING_S}"><Number>2001</Number>'
                                           f'<User>sip:agent@example.com</User></Dial></Response>')
        stack.app.document("/mixed-action", WAIT_LONG)
        reply = stack.sim.run_api("sim_callee", json.dumps({"match": "sip:agent@example.com", "answer_after": 0.2,
                                                            "hangup_after": 1}))
        assert reply.startswith("+OK"), reply
        call, uuid = _live_call(stack)
        _drain(stack)

        started = time.time()
        _transfer(stack, uuid, stack.app.url("/loop"))
        form, took = _timed_action(stack, "/loop-action", started)
        assert form["DialStatus"] == "failed" and form["DialHangupCause"] == "NORMAL_TEMPORARY_FAILURE", form
        assert form["DialRingStatus"] == "false" and form["DialBLegUUID"] == "", form
        assert took < RING_S / 3, took
        assert not [c for c in stack.sim.channels.values() if c.name.startswith("loopback/")], "a loopback leg was made"

        form, _ = _timed_action(stack, "/mixed-action", started)
        assert form["DialStatus"] == "completed" and form["DialBLegUUID"], form   # the SIP leg answered
        assert not call.channel.gone.is_set()
    lines = [r.getMessage() for r in caplog.records if r.name == "callfork.dial"]
    assert any(line.startswith(f"call {uuid}: dial: leg(s) 1 (2000) not dialled: FreeSWITCH is paused")
               and line.endswith("the dial fails at once") for line in lines), lines
    assert any(line.startswith(f"call {uuid}: dial: leg(s) 1 (2001) not dialled")
               and line.endswith("the other legs are dialled") for line in lines), lines


def test_a_twiml_dial_to_loopback_fails_at_once_during_a_drain():
    stack, _prefix = dial_stack(False)
    stack.app.start()   # its port goes into the config
    stack.config_text = f'[[numbers]]\nnumber = "3000"\napi = "twilio"\nanswer_url = "{stack.app.url("/twiml")}"\n'
    with stack:
        stack.app.document("/twiml", "<Response><Pause length=\"120\"/></Response>")
        stack.app.document("/dial", f'<Response><Dial action="{stack.app.url("/dial-action")}" timeout="{RING_S}">'
                                    f'<Number>2000</Number></Dial></Response>')
        stack.app.document("/dial-action", "<Response><Pause length=\"120\"/></Response>")
        _call, uuid = _live_call(stack, to="3000")
        _drain(stack)
        started = time.time()
        _transfer(stack, uuid, stack.app.url("/dial"))
        form, took = _timed_action(stack, "/dial-action", started)
    assert form["DialCallStatus"] == "failed" and form["DialBridged"] == "false", form
    assert took < RING_S / 3, took


def test_conference_speech_to_chosen_members_is_refused_during_a_drain_and_to_all_is_queued():
    with Stack() as stack:
        stack.app.document("/answer", f'<Response><Conference callbackUrl="{stack.app.url("/conf")}" beep="false" '
                                      f'stayAlone="true">drain room</Conference></Response>')
        stack.call(to="1001", hangup_after=90)
        member = stack.app.wait_event("ConferenceEnter", timeout=20, path="/conf").form["ConferenceMemberID"]
        _drain(stack)

        def speak(room, ids):
            return requests.post(stack.api_url(f"/Conference/{room}/Member/{ids}/Speak/"),
                                 headers=stack.api_headers(), timeout=10, json={"text": "hello"})
        refused = speak("drain room", member)
        assert refused.status_code == 503, refused.text
        assert "FreeSWITCH is paused for inbound channels" in refused.json()["error"], refused.text
        assert "speak to all members instead" in refused.json()["error"]
        assert not [c for c in stack.sim.channels.values() if c.name.startswith("loopback/")], "a helper was started"
        assert speak("no such room", member).status_code == 404
        queued = speak("drain room", "all")
        assert queued.status_code == 202 and queued.json()["member_id"] == [member], queued.text


@pytest.mark.freeswitch
def test_a_dial_to_loopback_fails_at_once_during_a_drain_on_freeswitch():
    """Under `flock /tmp/callfork-fs.lock`: binds 8084 and pauses the whole switch for a few seconds."""
    stack, prefix = dial_stack(True)
    with stack:
        try:
            stack.app.document("/answer", WAIT_LONG)
            stack.app.document("/loop", f'<Response><Dial action="{stack.app.url("/loop-action")}" '
                                        f'timeout="{RING_S}"><Number>2000</Number></Dial></Response>')
            stack.app.document("/loop-action", WAIT_LONG)
            _call, uuid = _live_call(stack)
            _drain(stack)
            started = time.time()
            _transfer(stack, uuid, stack.app.url("/loop"))
            form, took = _timed_action(stack, "/loop-action", started)
            assert form["DialStatus"] == "failed" and form["DialRingStatus"] == "false", form
            assert took < RING_S / 3, took
        finally:
            reply = stack.service.control.api("fsctl resume inbound")
            assert reply.startswith("+OK"), reply
            assert stack.service.control.api("fsctl pause_check inbound").strip() == "false"


def test_rest_speech_to_a_bridged_caller_is_refused_during_a_drain_and_to_the_callee_is_queued():
    """A bridged caller's REST Speak is rendered by a helper loopback channel (callfork/speech_render.py),
    which a paused switch cannot make: 503 with a message, no helper started; legs=bleg needs none."""
    stack, _prefix = dial_stack(False)
    with stack:
        stack.app.document("/answer", f'<Response><Dial timeout="{RING_S}"><User>sip:agent@example.com</User>'
                                      f'</Dial></Response>')
        reply = stack.sim.run_api("sim_callee", json.dumps({"match": "sip:agent@example.com", "answer_after": 0.2,
                                                            "hangup_after": 60}))
        assert reply.startswith("+OK"), reply
        _call, uuid = _live_call(stack)
        wait_until(lambda: stack.service.live.bridged_leg(uuid), 15, "the caller bridged to the SIP callee")
        _drain(stack)

        def speak(legs):
            return requests.post(stack.api_url(f"/Call/{uuid}/Speak/"), headers=stack.api_headers(), timeout=10,
                                 json={"text": "hello there", "legs": legs})
        for legs in ("aleg", "both"):
            refused = speak(legs)
            assert refused.status_code == 503, refused.text
            assert "FreeSWITCH is paused for inbound channels" in refused.json()["error"], refused.text
        assert not [c for c in stack.sim.channels.values() if c.name.startswith("loopback/")], "a helper was started"
        queued = speak("bleg")
        assert queued.status_code == 202, queued.text
