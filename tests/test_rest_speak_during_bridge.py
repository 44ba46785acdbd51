"""REST Speak (`/Call/{uuid}/Speak/`) on a call bridged by <Dial>, on the simulator and (marked
`freeswitch`) on a real FreeSWITCH: `legs=aleg` is heard by the caller during the bridge and not by
the callee, `legs=both` by both, DELETE stops a looping one while the bridge goes on
(callfork/live_controls.py: the speech is rendered to a WAV and displaced on the A-leg, since a
broadcast to the A-leg would wait for the end of the event-locked bridge).

The callee is another number of the same callfork (tests/dial_support.py): it records what it hears,
waits, then plays a 700 Hz marker for a second and hangs up, which ends the bridge. "During the
bridge" is before the marker in what the caller heard. Speech is counted as loud 100 ms windows
that are not mostly the marker's tone.
"""
import pytest
import requests

from dial_support import CALLEE_HZ, channel, dial_stack, dial_events as _dial_events
from harness import switch_modes
from stream_scenarios import Calls, rms, tone, windows_with
from waiting import wait_until

TEXT = "Please hold while we connect your call to the next available agent."


def _speech_windows(samples, rate=8000):
    n = rate // 10
    return sum(1 for i in range(0, len(samples) - n + 1, n)
               if rms(samples[i:i + n]) >= 300 and not windows_with(samples[i:i + n], CALLEE_HZ))


def _marker_start(samples, rate=8000):
    """Where the callee's marker starts in what the caller heard (the bridge ends after it)."""
    n = rate // 10
    starts = [i for i in range(0, len(samples) - n + 1, n) if windows_with(samples[i:i + n], CALLEE_HZ)]
    assert starts, "the caller never heard the callee's marker: the bridge did not last"
    return starts[0]


def _bridged(stack, p, calls, waits):
    """The caller (silent) dials 77, which records what it hears, waits `waits` (seconds each, one
    <Wait> per item), plays the marker and hangs up; returns the caller's call and its UUID once
    bridged."""
    marker = calls.serve_wav("/marker.wav", tone(CALLEE_HZ, 1.0))
    wait_verbs = "".join(f'<Wait length="{w}"/>' for w in waits)
    calls.add(p + "77", f'<Response><Record recordSession="true" fileFormat="wav" '
                        f'callbackUrl="{calls.url("/callee-rec")}"/>{wait_verbs}<Play>{marker}</Play></Response>')
    calls.add(p + "1", f'<Response><Dial callbackUrl="{calls.url("/dial-events")}"><Number>77</Number>'
                       f'</Dial></Response>')
    call = stack.call(to="1", keep_heard=True, hangup_after=45)
    assert stack.app.wait_for(lambda: len(_dial_events(stack)) >= 2, 30), _dial_events(stack)
    return call, _dial_events(stack)[1]["CallUUID"]


def _timeline(stack, uuid):
    resp = requests.get(stack.api_url(f"/Call/{uuid}/Timeline/"), headers=stack.api_headers(), timeout=10)
    return resp.json()["timeline"] if resp.status_code == 200 else []


def _speak(stack, uuid, method="POST", **body):
    return requests.request(method, stack.api_url(f"/Call/{uuid}/Speak/"), headers=stack.api_headers(),
                            json=body or None, timeout=30)


def _callee_heard(stack):
    rec = stack.app.wait_event("RecordStop", timeout=30, path="/callee-rec").form
    return channel(requests.get(rec["RecordUrl"], headers=stack.api_headers(), timeout=5), 0)


@switch_modes()
@pytest.mark.parametrize("legs", ["aleg", "both"])
def test_speak_during_a_bridge_is_heard_before_the_bridge_ends(tmp_path, real_fs, legs):
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        call, a_uuid = _bridged(stack, p, calls, [14])
        resp = _speak(stack, a_uuid, text=TEXT, legs=legs)
        assert resp.status_code == 202, resp.text
        call.wait(60)
        callee_heard = _callee_heard(stack)
        caller_heard = call.heard()
        kinds = [e["kind"] for e in _timeline(stack, a_uuid)]
    marker = _marker_start(caller_heard)
    assert _speech_windows(caller_heard[:marker]) >= 15          # the caller heard it during the bridge
    if legs == "aleg":
        assert _speech_windows(callee_heard) <= 2                # the callee did not
    else:
        assert _speech_windows(callee_heard) >= 15
    assert "api_speak_playing" in kinds


@switch_modes()
def test_delete_stops_a_looping_speech_during_a_bridge(tmp_path, real_fs):
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        call, a_uuid = _bridged(stack, p, calls, [9, 8])
        resp = _speak(stack, a_uuid, text="Please hold.", legs="aleg", loop="true")
        assert resp.status_code == 202, resp.text
        b_uuid = next(u for u in stack.service.calls if u != a_uuid)    # the callee's own call
        wait_until(lambda: "api_speak_playing" in [e["kind"] for e in _timeline(stack, a_uuid)], 20,
                   "the speech is displaced")
        wait_until(lambda: sum(e["kind"] == "verb" for e in _timeline(stack, b_uuid)) >= 3, 20,
                   "the callee's second Wait")
        assert _speak(stack, a_uuid, method="DELETE").status_code == 204
        call.wait(60)
        caller_heard = call.heard()
    marker = _marker_start(caller_heard)
    assert _speech_windows(caller_heard[:marker - 5 * 8000]) >= 15   # looped until the DELETE
    assert _speech_windows(caller_heard[marker - 5 * 8000:marker]) <= 2   # then nothing, bridge on
