"""<Conference> attributes and REST member controls of issue 13 that tests/test_scenario_conference.py
does not cover, on the simulator and (marked `freeswitch`) on a real FreeSWITCH, each checked on
what the callers heard: muted="true" (the member is not heard, while it hears the room) and the
REST unmute; startConferenceOnEnter="false" (nobody hears anyone until a member whose attribute is
true enters); enterSound / exitSound URLs and beep="false"; stayAlone="false" (the last member is
put out and its document goes on); a REST Play to one member is heard by that member only.

Callers are the harness's, each speaking one tone (or nothing); 100 ms windows are counted as in
test_scenario_conference.py.
"""
import io

import pytest
import requests
import soundfile

from conference_support import conference_doc as _doc, enters as _enters, join_room as _join, \
    windows_with_tones as _windows
from harness import Stack, switch_modes
from stream_scenarios import tone
from waiting import wait_until

PROFILE_ENTER_TONES = (500, 600, 700)       # the stock profile's enter-sound: %(200,0,500,600,700)


def _api(stack, method, path, **kw):
    return requests.request(method, stack.api_url(path), headers=stack.api_headers(), timeout=30, **kw)


def _serve_tone(stack, path, hz, seconds):
    wav = io.BytesIO()
    soundfile.write(wav, tone(hz, seconds, level=9000), 8000, subtype="PCM_16", format="WAV")
    return stack.app.document(path, wav.getvalue(), content_type="audio/wav")


def _by_to(stack, docs):
    """An answer document per called number."""
    def answer(req):
        return docs[req.form.get("To", "")[-4:]]
    stack.app.document("/answer", answer)


@switch_modes()
def test_muted_attribute_the_member_hears_but_is_not_heard(real_fs):
    with Stack(real=real_fs) as stack:
        _by_to(stack, {"1001": _doc(stack, "quiet room", stayAlone="true", beep="false", muted="true"),
                       "1002": _doc(stack, "quiet room", stayAlone="true", beep="false")})
        muted = _join(stack, 1, 400, to="1001", hangup_after=9, keep_heard=True)
        other = _join(stack, 2, 700, to="1002", hangup_after=9, keep_heard=True)
        room = _api(stack, "GET", "/Conference/quiet room/").json()
        flags = {m["call_uuid"]: m["muted"] for m in room["members"]}
        enters = _enters(stack)
        assert flags == {enters[0]["CallUUID"]: True, enters[1]["CallUUID"]: False}, flags
        muted.wait(30)
        other.wait(30)
        assert _windows(muted.heard(), [700]) >= 10            # the muted member hears the room
        assert _windows(other.heard(), [400]) == 0             # and is not heard in it


@switch_modes()
def test_rest_unmute_lets_a_muted_member_be_heard(real_fs):
    with Stack(real=real_fs) as stack:
        _by_to(stack, {"1001": _doc(stack, "unmute room", stayAlone="true", beep="false", muted="true"),
                       "1002": _doc(stack, "unmute room", stayAlone="true", beep="false")})
        _join(stack, 1, 400, to="1001", hangup_after=10)
        other = _join(stack, 2, to="1002", hangup_after=10, keep_heard=True)
        member = _enters(stack)[0]["ConferenceMemberID"]
        reply = _api(stack, "DELETE", f"/Conference/unmute room/Member/{member}/Mute/")
        assert reply.status_code == 204, reply.text
        room = _api(stack, "GET", "/Conference/unmute room/").json()
        assert not any(m["muted"] for m in room["members"])
        assert _api(stack, "DELETE", "/Conference/unmute room/Member/99999/Mute/").status_code == 404
        other.wait(30)
        assert _windows(other.heard(), [400]) >= 10


@switch_modes()
def test_start_conference_on_enter_false_waits_for_a_member_who_starts_it(real_fs):
    with Stack(real=real_fs) as stack:
        waiting = dict(stayAlone="true", beep="false", startConferenceOnEnter="false")
        _by_to(stack, {"1001": _doc(stack, "waiting room", **waiting),
                       "1002": _doc(stack, "waiting room", **waiting),
                       "1003": _doc(stack, "waiting room", stayAlone="true", beep="false")})
        first = _join(stack, 1, 400, to="1001", hangup_after=12, keep_heard=True)
        _join(stack, 2, 700, to="1002", hangup_after=14)
        # both wait: neither hears the other. Then a member who starts the room enters
        _join(stack, 3, 1100, to="1003", hangup_after=12)
        first.wait(30)
        heard = first.heard()
        # before the third member, the second's tone alone would be heard if the room had started
        assert _windows(heard, [700], [1100]) <= 1, _windows(heard, [700], [1100])
        assert _windows(heard, [700, 1100]) >= 10               # once started, both others


@switch_modes()
def test_enter_and_exit_sounds_are_played_to_the_room(real_fs):
    with Stack(real=real_fs) as stack:
        enter = _serve_tone(stack, "/enter.wav", 900, 1.0)
        leave = _serve_tone(stack, "/exit.wav", 1300, 1.0)
        doc = _doc(stack, "sound room", stayAlone="true", enterSound=enter, exitSound=leave)
        _by_to(stack, {"1001": doc, "1002": doc})
        staying = _join(stack, 1, to="1001", hangup_after=12, keep_heard=True)
        _join(stack, 2, to="1002", hangup_after=4)
        stack.app.wait_event("ConferenceExit", timeout=20, path="/conf")
        staying.wait(30)
        heard = staying.heard()
        assert _windows(heard, [900]) >= 5, _windows(heard, [900])       # the enter sound
        assert _windows(heard, [1300]) >= 5, _windows(heard, [1300])     # the exit sound


@pytest.mark.parametrize("beep", ["true", "false"])
@switch_modes()
def test_beep_false_is_silent_and_the_default_beeps(real_fs, beep):
    with Stack(real=real_fs) as stack:
        doc = _doc(stack, "beep room", stayAlone="true", beep=beep)
        _by_to(stack, {"1001": doc, "1002": doc})
        staying = _join(stack, 1, to="1001", hangup_after=8, keep_heard=True)
        _join(stack, 2, to="1002", hangup_after=3)
        stack.app.wait_event("ConferenceExit", timeout=20, path="/conf")
        staying.wait(30)
        beeps = _windows(staying.heard(), PROFILE_ENTER_TONES)
    if beep == "true":
        assert beeps >= 1, beeps          # the profile's enter tone when the second member came in
    else:
        assert beeps == 0, beeps


@switch_modes()
def test_stay_alone_false_puts_the_last_member_out(real_fs):
    with Stack(real=real_fs) as stack:
        after = f'<Redirect>{stack.app.url("/after")}</Redirect>'
        doc = _doc(stack, "pair room", after=after, beep="false")       # stayAlone: false by default
        _by_to(stack, {"1001": doc, "1002": doc})
        stack.app.document("/after", "<Response><Hangup/></Response>")
        staying = _join(stack, 1, to="1001", hangup_after=60)
        _join(stack, 2, to="1002", hangup_after=3)
        stack.app.wait_path("/after", timeout=20)
        first = _enters(stack)[0]
        assert [r.form["CallUUID"] for r in list(stack.app.requests) if r.path == "/after"] == [first["CallUUID"]]
        staying.wait(30)
        exits = wait_until(lambda: len(stack.app.events("ConferenceExit", path="/conf")) == 2 and
                           stack.app.events("ConferenceExit", path="/conf"), 15, "both exits")
        assert sorted(e.form["ConferenceLastMember"] for e in exits) == ["false", "true"]


@switch_modes()
def test_rest_play_to_one_member_is_heard_by_that_member_only(real_fs):
    with Stack(real=real_fs) as stack:
        music = _serve_tone(stack, "/music.wav", 900, 3.0)
        doc = _doc(stack, "play room", stayAlone="true", beep="false")
        _by_to(stack, {"1001": doc, "1002": doc})
        target = _join(stack, 1, to="1001", hangup_after=10, keep_heard=True)
        other = _join(stack, 2, to="1002", hangup_after=10, keep_heard=True)
        member = _enters(stack)[0]["ConferenceMemberID"]
        reply = _api(stack, "POST", f"/Conference/play room/Member/{member}/Play/", json={"url": music})
        assert reply.status_code == 202 and reply.json()["member_id"] == [member], reply.text
        assert _api(stack, "POST", "/Conference/play room/Member/99999/Play/",
                    json={"url": music}).status_code == 404
        target.wait(30)
        other.wait(30)
        assert _windows(target.heard(), [900]) >= 15
        assert _windows(other.heard(), [900]) == 0
