"""SWML connect's answer_on_bridge, on the simulator and (marked `freeswitch`) on a real FreeSWITCH
(tests/test_scenario_swml_connect.py has the rest of connect): with it the caller stays unanswered
while the callee rings and is answered by the bridge; without it the caller is answered at once.
Seen in the caller's Hangup webhook (AnswerTime against StartTime) and in what it heard.

The callee (a loopback call to another number of the same callfork, tests/dial_support.py) rings
4 s: its document's leading <Wait> keeps it unanswered, then it answers with a tone.
"""
import json
import time

import pytest

from dial_support import CALLEE_HZ, CALLER_HZ, dial_stack
from harness import switch_modes
from stream_scenarios import Calls, tone, windows_with, write_wav

RING_S = 4


def _seconds(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))


@pytest.mark.parametrize("on_bridge", [True, False], ids=["answer_on_bridge", "answered_first"])
@switch_modes()
def test_connect_answer_on_bridge_leaves_the_caller_unanswered_while_the_callee_rings(tmp_path, real_fs, on_bridge):
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 3.0))
        calls.add(p + "79", f'<Response><Wait length="{RING_S}"/><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", json.dumps({"version": "1.0.0", "sections": {"main": [
            {"connect": {"to": "79", "answer_on_bridge": on_bridge}}, {"hangup": {}}]}}), "application/json")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 15.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
        call.wait(40)

        def caller_hangup():
            return [r.form for r in list(stack.app.requests)
                    if r.path == "/hangup" and r.form.get("To") == p + "1"]
        assert stack.app.wait_for(caller_hangup, 20)
        hangup = caller_hangup()[0]
        heard = call.heard()
    waited = _seconds(hangup["AnswerTime"]) - _seconds(hangup["StartTime"])
    if on_bridge:
        assert waited >= RING_S - 1, hangup          # answered by the bridge, when the callee answered
    else:
        assert waited <= 1, hangup                   # answered before the dial
    assert windows_with(heard, CALLEE_HZ) >= 15       # and bridged to the callee either way
