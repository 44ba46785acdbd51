"""<Dial> sendDigits with sendOnPreanswer="true": the digits go to the callee while it is still in
early media (its 183), not after its answer; without sendOnPreanswer they wait for the answer.

On a real FreeSWITCH (marked `freeswitch`) the callee is tests/sip_phone.py's phone answering 183
with SDP, then 200 OK 4 s later: it keeps the RFC 4733 telephone events it receives and whether
each came before its 200 OK. On the simulator the callee is a scripted `sim_callee` with early media
answering 4 s after: the simulator plays sent DTMF in band (switch_sim/apis/uuid_commands.py), so
the DTMF tones must be in what the callee heard before its answer, or only after it.
"""
import json
import math

import numpy as np
import pytest
import requests

from dial_support import CALLER_HZ, dial_stack
from sip_phone import SipPhone
from stream_scenarios import Calls, tone, write_wav
from switch_sim.callees import heard as callee_heard

ANSWER_AFTER_S = 4.0
RATE = 8000


def _level_db(samples, freq):
    """The level of `freq` in int16 samples, dB of a full-scale sine."""
    if len(samples) == 0:
        return -120.0
    x = np.asarray(samples, dtype=np.float64) / 32768.0
    t = np.arange(len(x))
    amp = 2 * math.hypot(float(np.dot(x, np.cos(2 * np.pi * freq * t / RATE))),
                         float(np.dot(x, np.sin(2 * np.pi * freq * t / RATE)))) / len(x)
    return 20 * math.log10(max(amp, 1e-6))


def _digit_1_windows(samples, win=800):
    """100 ms windows holding DTMF 1 (697 and 1209 Hz, both loud)."""
    return [i // win for i in range(0, len(samples) - win + 1, win)
            if _level_db(samples[i:i + win], 697) > -30 and _level_db(samples[i:i + win], 1209) > -30]


def _timeline(stack):
    """The call's timeline (for a failure's message)."""
    uuid = next(iter(stack.service.calls), None)
    if uuid is None:
        return None
    resp = requests.get(stack.api_url(f"/Call/{uuid}/Timeline/"), headers=stack.api_headers(), timeout=10)
    return [(e["kind"], e["detail"]) for e in resp.json().get("timeline", [])]


def _dial(calls, target, preanswer):
    flag = ' sendOnPreanswer="true"' if preanswer else ""
    return (f'<Response><Dial callbackUrl="{calls.url("/dial-events")}"><User sendDigits="123"{flag}>{target}'
            '</User></Dial></Response>')


@pytest.mark.freeswitch
@pytest.mark.parametrize("preanswer", [True, False], ids=["on-preanswer", "on-answer"])
def test_send_digits_reach_a_sip_phone_in_early_media(tmp_path, preanswer):
    with SipPhone(answer="answer", answer_after=ANSWER_AFTER_S, early_media=True, tone_hz=None) as phone:
        stack, p = dial_stack(True)
        with stack:
            calls = Calls(stack)
            calls.add(p + "1", _dial(calls, phone.uri, preanswer))
            caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
            call = stack.call(to="1", audio=str(caller_wav), hangup_after=12)
            sip = phone.wait_call(30)
            try:
                phone.wait(lambda: len(sip.dtmf) >= 3, 15, "three telephone events")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: got {sip.dtmf}, answered {sip.answered}, requests "
                                     f"{sip.requests}, timeline {_timeline(stack)}") from None
            assert sip.digits() == "123", sip.dtmf
            phone.wait(lambda: sip.answered, 10, "the phone's answer")
            if preanswer:
                assert sip.digits(early=True) == "123", sip.dtmf
            else:
                assert sip.digits(early=False) == "123", sip.dtmf
            call.wait(30)


@pytest.mark.parametrize("preanswer", [True, False], ids=["on-preanswer", "on-answer"])
def test_send_digits_reach_a_simulated_callee_in_early_media(tmp_path, preanswer):
    stack, _p = dial_stack(False)
    with stack:
        calls = Calls(stack)
        reply = stack.sim.run_api("sim_callee", json.dumps({
            "match": "sip:agent@example.com", "early_media": True, "answer_after": ANSWER_AFTER_S,
            "hangup_after": 2, "keep_heard": True}))
        assert reply.startswith("+OK"), reply
        callee_id = reply.split()[1]
        calls.add("1", _dial(calls, "sip:agent@example.com", preanswer))
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=20)
        stack.app.wait_event("DialHangup", timeout=30, path="/dial-events")
        call.wait(30)
        samples = callee_heard(stack.sim, callee_id)
    windows = _digit_1_windows(samples)
    assert windows, "the callee never heard DTMF 1"
    # heard from its early media on: the answer comes ANSWER_AFTER_S later
    if preanswer:
        assert max(windows) < (ANSWER_AFTER_S - 0.5) * 10, windows
    else:
        assert min(windows) >= (ANSWER_AFTER_S - 0.3) * 10, windows
