"""A Vobiz-style REST call (`POST .../Call/`) whose far side rings first, on the simulator and (marked
`freeswitch`) on a real FreeSWITCH: the dial string is mod_loopback's inline form, so the far side
rings (ring_ready), waits a second, then does what the call's `to` says: `answer` (the call reaches
callfork about a second after it was placed and runs its document), `hangup:USER_BUSY` (the Hangup
webhook says busy, the answer URL is never fetched) or `sleep:30000` (no answer: the ring_timeout
ends it with NO_ANSWER). The originate's pair, ringing and causes are pinned to FreeSWITCH by
tests/fixtures/fs-captures/originate-loopback.json (tests/test_sim_originate_loopback_truth.py).
Real-switch runs bind port 8084: run them under `flock /tmp/callfork-fs.lock`."""
import time

import requests

from harness import Stack, switch_modes

DIAL = "loopback/m:^:ring_ready^sleep:1000^{to}^park/default/inline"


def _stack(real_fs) -> Stack:
    return Stack(real=real_fs, env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": DIAL})


def _place(stack, to: str, ring_timeout: int = 60) -> str:
    resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), timeout=10,
                         json={"from": "15551230001", "to": to, "answer_url": stack.app.url("/answer"),
                               "hangup_url": stack.app.url("/hangup"), "ring_timeout": ring_timeout})
    assert resp.status_code == 201, resp.text
    return resp.json()["request_uuid"]


def _hangup(stack, request_uuid: str, timeout: float) -> dict:
    def mine():
        return [r.form for r in stack.app.events("Hangup") if r.form.get("RequestUUID") == request_uuid]
    assert stack.app.wait_for(mine, timeout), "no Hangup webhook"
    return mine()[0]


@switch_modes()
def test_a_far_side_that_rings_then_answers(real_fs):
    with _stack(real_fs) as stack:
        stack.app.document("/answer", "<Response><Wait length='1'/><Hangup/></Response>")
        placed = time.monotonic()
        request_uuid = _place(stack, "answer")
        fetch = stack.app.wait_path("/answer", timeout=15)[0]
        assert time.monotonic() - placed >= 0.9        # it rang for a second first
        assert fetch.form["RequestUUID"] == request_uuid
        hangup = _hangup(stack, request_uuid, 15)
        assert hangup["CallStatus"] == "completed" and hangup["AnswerTime"]


@switch_modes()
def test_a_busy_far_side(real_fs):
    with _stack(real_fs) as stack:
        hangup = _hangup(stack, _place(stack, "hangup:USER_BUSY"), 15)
        assert hangup["CallStatus"] == "busy" and hangup["HangupCause"] == "USER_BUSY"
        assert hangup["HangupCauseCode"] == "3010" and hangup["Error"] == "originate failed: -ERR USER_BUSY"
        assert not [r for r in stack.app.requests if r.path == "/answer"]


@switch_modes()
def test_a_far_side_that_never_answers(real_fs):
    with _stack(real_fs) as stack:
        placed = time.monotonic()
        hangup = _hangup(stack, _place(stack, "sleep:30000", ring_timeout=3), 20)
        assert 2.0 <= time.monotonic() - placed <= 10     # FreeSWITCH counts ring_timeout loosely (2.5-2.8 s seen for 3)
        assert hangup["CallStatus"] == "no-answer" and hangup["HangupCause"] == "NO_ANSWER"
        assert not [r for r in stack.app.requests if r.path == "/answer"]
