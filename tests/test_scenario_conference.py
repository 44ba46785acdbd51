"""<Conference> end to end, on the simulator and (marked `freeswitch`) on a real FreeSWITCH with
mod_conference: three callers in one room each hear the other two and not themselves (three
distinct tones, measured per 100 ms window on what each caller heard); a muted member is not heard;
the enter and exit callbacks in order with their fields; endConferenceOnExit puts the others out
and their documents go on; maxMembers refuses the extra member, whose next elements run; relayDTMF
sends a member's digits to the others (test_scenario_conference_dtmf.py); record keeps the room as
WAV or MP3; and the Conference REST API (list, get,
kick, mute, hang up; 404 for an unknown room or member).

Callers are the harness's (the simulator's scripted callers, or loopback calls to `callfork<N>` on
the real switch, whose A leg records what it heard). Each speaks one tone from a WAV file.
"""
import pytest
import requests

from conference_support import conference_doc as _doc, enters as _enters, join_room as _join, \
    windows_with_tones as _windows
from harness import Stack, switch_modes
from stream_scenarios import tone, write_wav
from waiting import wait_until

TONES = (400, 700, 1100)


def _exits(stack):
    return [r.form for r in stack.app.events("ConferenceExit", path="/conf")]


def _requests(stack, path):
    return [r for r in list(stack.app.requests) if r.path == path]


def _api(stack, method, path, **kw):
    return requests.request(method, stack.api_url(path), headers=stack.api_headers(), timeout=10, **kw)


@switch_modes()
def test_three_parties_each_hear_the_other_two(real_fs):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", _doc(stack, "three room", stayAlone="true"))
        calls = [_join(stack, i + 1, hz, hangup_after=9, keep_heard=True, to=f"100{i}")
                 for i, hz in enumerate(TONES)]
        for call in calls:
            call.wait(30)
        stack.app.wait_event("ConferenceExit", timeout=15, count=3, path="/conf")

        for call, own in zip(calls, TONES):
            heard = call.heard()
            others = [f for f in TONES if f != own]
            # a second and more of the three-way room: both others, never itself
            assert _windows(heard, others, [own]) >= 10, own
            assert _windows(heard, [own], []) == 0, own

        enters, exits = _enters(stack), _exits(stack)
        assert [e["ConferenceFirstMember"] for e in enters] == ["true", "false", "false"]
        assert len({e["ConferenceUUID"] for e in enters}) == 1 and enters[0]["ConferenceUUID"]
        assert len({e["ConferenceMemberID"] for e in enters}) == 3
        for e in enters:
            assert e["ConferenceAction"] == "enter" and e["ConferenceName"] == "three room"
            assert e["CallStatus"] == "in-progress" and e["Direction"] == "inbound"
            assert e["From"] and e["To"] and e["CallUUID"]
        for e in exits:
            assert e["ConferenceAction"] == "exit" and "From" not in e and "CallStatus" not in e
            assert e["ConferenceUUID"] == enters[0]["ConferenceUUID"]
        assert sorted(e["ConferenceLastMember"] for e in exits) == ["false", "false", "true"]
        # each member's enter comes before its exit
        for e in enters:
            assert any(x["ConferenceMemberID"] == e["ConferenceMemberID"] for x in exits)


@switch_modes()
def test_a_muted_member_is_not_heard(real_fs):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", _doc(stack, "mute room", stayAlone="true"))
        calls = [_join(stack, i + 1, hz, hangup_after=9, keep_heard=True, to=f"100{i}")
                 for i, hz in enumerate(TONES)]
        enters = _enters(stack)
        muted = enters[1]["ConferenceMemberID"]
        reply = _api(stack, "POST", f"/Conference/mute room/Member/{muted}/Mute/")
        assert reply.status_code == 202 and reply.json()["member_id"] == [muted], reply.text
        room = _api(stack, "GET", "/Conference/mute room/").json()
        assert {m["member_id"]: m["muted"] for m in room["members"]}[muted] is True
        for call in calls:
            call.wait(30)
        first, third = calls[0].heard(), calls[2].heard()
        # after the mute: the third member's tone without the second's, and the first's
        assert _windows(first, [TONES[2]], [TONES[1]]) >= 10
        assert _windows(third, [TONES[0]], [TONES[1]]) >= 10


@switch_modes()
def test_rest_kick_hangup_and_unknown_room_or_member(real_fs):
    with Stack(real=real_fs) as stack:
        after = f'<Redirect>{stack.app.url("/after")}</Redirect>'
        stack.app.document("/answer", _doc(stack, "rest room", after=after, stayAlone="true"))
        stack.app.document("/after", "<Response><Hangup/></Response>")
        first = _join(stack, 1, hangup_after=60, to="1001")
        second = _join(stack, 2, hangup_after=60, to="1002")
        enters = _enters(stack)

        names = _api(stack, "GET", "/Conference/").json()
        assert "rest room" in names["conferences"]
        room = _api(stack, "GET", "/Conference/rest room/").json()
        assert room["conference_member_count"] == "2"
        assert {m["call_uuid"] for m in room["members"]} == {e["CallUUID"] for e in enters}

        assert _api(stack, "GET", "/Conference/no such room/").status_code == 404
        assert _api(stack, "POST", "/Conference/no such room/Member/1/Kick/").status_code == 404
        missing = _api(stack, "POST", "/Conference/rest room/Member/99999/Mute/")
        assert missing.status_code == 404 and missing.json()["error"] == "member not found"

        kicked = enters[1]
        reply = _api(stack, "POST", f"/Conference/rest room/Member/{kicked['ConferenceMemberID']}/Kick/")
        assert reply.status_code == 202 and reply.json()["message"] == "kicked"
        # the kicked member's document goes on after </Conference>
        stack.app.wait_path("/after", timeout=15)
        assert _requests(stack, "/after")[0].form["CallUUID"] == kicked["CallUUID"]
        exit_ = stack.app.wait_event("ConferenceExit", timeout=15, path="/conf").form
        assert exit_["ConferenceMemberID"] == kicked["ConferenceMemberID"]
        assert exit_["ConferenceLastMember"] == "false"
        second.wait(30)

        reply = _api(stack, "DELETE", f"/Conference/rest room/Member/{enters[0]['ConferenceMemberID']}/")
        assert reply.status_code == 202 and reply.json()["message"] == "hangup"
        first.wait(30)
        wait_until(lambda: len(stack.app.events("Hangup")) == 2, 15, "both hangups")
        assert _api(stack, "GET", "/Conference/rest room/").status_code == 404


@switch_modes()
def test_end_conference_on_exit_puts_the_others_out(real_fs):
    with Stack(real=real_fs) as stack:
        after = f'<Redirect>{stack.app.url("/after")}</Redirect>'

        def answer(req):
            end = "true" if req.form.get("To", "").endswith("1001") else "false"
            return _doc(stack, "end room", after=after, stayAlone="true", endConferenceOnExit=end)

        stack.app.document("/answer", answer)
        stack.app.document("/after", "<Response><Hangup/></Response>")
        ender = _join(stack, 1, hangup_after=60, to="1001")
        other = _join(stack, 2, hangup_after=60, to="1002")
        enders = _enters(stack)
        _api(stack, "DELETE", f"/Conference/end room/Member/{enders[0]['ConferenceMemberID']}/")
        ender.wait(30)
        stack.app.wait_path("/after", timeout=15)
        other.wait(30)
        assert [r.form["CallUUID"] for r in _requests(stack, "/after")] == [enders[1]["CallUUID"]]
        wait_until(lambda: len(_exits(stack)) == 2, 15, "both exits")
        exits = _exits(stack)
        # two calls' callbacks: each call's own order holds, not the order between the calls
        last = {e["ConferenceMemberID"]: e["ConferenceLastMember"] for e in exits}
        assert last == {enders[0]["ConferenceMemberID"]: "false", enders[1]["ConferenceMemberID"]: "true"}


@switch_modes()
def test_max_members_refuses_the_extra_member(real_fs):
    with Stack(real=real_fs) as stack:
        after = f'<Redirect>{stack.app.url("/full")}</Redirect>'
        stack.app.document("/answer", _doc(stack, "small room", after=after, maxMembers="2", stayAlone="true"))
        stack.app.document("/full", "<Response><Hangup/></Response>")
        calls = [_join(stack, 1, hangup_after=60, to="1001"), _join(stack, 2, hangup_after=60, to="1002")]
        extra = stack.call(to="1003", hangup_after=60)
        stack.app.wait_path("/full", timeout=20)
        refused = _requests(stack, "/full")[0].form["CallUUID"]
        assert refused not in {e["CallUUID"] for e in _enters(stack)}
        extra.wait(30)
        hangup = wait_until(lambda: [r.form for r in stack.app.events("Hangup") if r.form.get("CallUUID") == refused],
                            15, "the refused call's Hangup webhook")
        assert "full" in hangup[0].get("Error", "")
        assert len(_enters(stack)) == 2
        assert _api(stack, "DELETE", "/Conference/small room/").status_code == 204
        for call in calls:
            call.wait(30)


@switch_modes()
def test_digits_match_then_hangup_on_star(real_fs):
    with Stack(real=real_fs) as stack:
        after = f'<Redirect>{stack.app.url("/after")}</Redirect>'
        stack.app.document("/answer", _doc(stack, "keys room", after=after, stayAlone="true",
                                           digitsMatch="12,99", hangupOnStar="true"))
        stack.app.document("/after", "<Response><Hangup/></Response>")
        call = stack.call(to="1001", dtmf=[("12", 2.5), ("*", 4.0)], hangup_after=30)
        match = stack.app.wait_event("ConferenceDigitsMatch", timeout=20, path="/conf").form
        assert match["ConferenceDigitsMatch"] == "12" and match["ConferenceAction"] == "digits"
        stack.app.wait_path("/after", timeout=20)
        exit_ = stack.app.wait_event("ConferenceExit", timeout=10, path="/conf").form
        assert exit_["ConferenceMemberID"] == match["ConferenceMemberID"]
        call.wait(30)


@switch_modes()
def test_time_limit_puts_the_member_out(real_fs):
    with Stack(real=real_fs) as stack:
        after = f'<Redirect>{stack.app.url("/after")}</Redirect>'
        stack.app.document("/answer", _doc(stack, "short room", after=after, stayAlone="true", timeLimit="2"))
        stack.app.document("/after", "<Response><Hangup/></Response>")
        call = stack.call(to="1001", hangup_after=30)
        enter = stack.app.wait_event("ConferenceEnter", timeout=20, path="/conf")
        stack.app.wait_path("/after", timeout=10)
        took = _requests(stack, "/after")[0].received_at - enter.received_at
        assert 1.5 <= took <= 5, took
        call.wait(30)


@switch_modes()
def test_wait_sound_plays_while_the_member_is_alone(real_fs):
    with Stack(real=real_fs) as stack:
        import io
        import soundfile
        wav = io.BytesIO()
        soundfile.write(wav, tone(600, 3, level=9000), 8000, subtype="PCM_16", format="WAV")
        stack.app.document("/moh.wav", wav.getvalue(), content_type="audio/wav")
        stack.app.document("/wait", f'<Response><Play>{stack.app.url("/moh.wav")}</Play></Response>')
        stack.app.document("/answer", _doc(stack, "lonely room", stayAlone="true",
                                           waitSound=stack.app.url("/wait")))
        call = stack.call(to="1001", hangup_after=6, keep_heard=True)
        call.wait(30)
        wait_form = _requests(stack, "/wait")[0].form
        assert wait_form["ConferenceAction"] == "waitSound" and wait_form["Event"] == "ConferenceRemoteSounds"
        assert wait_form["ConferenceName"] == "lonely room" and wait_form["CallUUID"]
        assert _windows(call.heard(), [600], []) >= 10


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
@switch_modes()
def test_record_and_action_with_the_recording(real_fs, fmt):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", _doc(stack, "taped room", stayAlone="true", record="true", timeLimit="3",
                                           recordFileFormat=fmt, action=stack.app.url("/act")))
        stack.app.document("/act", "<Response><Hangup/></Response>")
        call = stack.call(to="1001", hangup_after=30,
                          audio=write_wav(stack.data_dir / "tone-500.wav", tone(500, 30, level=9000)))
        stack.app.wait_path("/act", timeout=20)
        form = _requests(stack, "/act")[0].form
        assert form["ConferenceName"] == "taped room" and form["ConferenceMemberID"] and form["ConferenceUUID"]
        assert form["RecordUrl"].endswith("." + fmt)
        # the recording stopped when the member left: it is there, whole, when the action is asked
        reply = requests.get(form["RecordUrl"], headers=stack.api_headers(), timeout=10)
        assert reply.status_code == 200
        assert reply.headers["Content-Type"] == ("audio/mpeg" if fmt == "mp3" else "audio/wav")
        if fmt == "wav":
            assert reply.content[:4] == b"RIFF"
        else:
            assert reply.content[:3] == b"ID3" or reply.content[0] == 0xFF
        import io
        import soundfile
        data, rate = soundfile.read(io.BytesIO(reply.content), dtype="int16", always_2d=True)
        assert soundfile.info(io.BytesIO(reply.content)).format == fmt.upper()
        samples = data[:, 0]
        # about the member's 3 s in the room, holding what it said
        assert 2.0 <= len(samples) / rate <= 6.0, len(samples) / rate
        assert _windows(samples, [500], [], rate=rate) >= 10
        call.wait(30)
        if fmt == "mp3":      # converted: the WAV FreeSWITCH wrote is gone
            assert not list(stack.data_dir.glob("recordings/*.wav"))


@switch_modes()
def test_record_of_a_member_who_hung_up_alone_is_converted(real_fs):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", _doc(stack, "hung room", stayAlone="true", record="true"))
        call = stack.call(to="1001", hangup_after=3,
                          audio=write_wav(stack.data_dir / "tone-500.wav", tone(500, 30, level=9000)))
        stack.app.wait_event("ConferenceEnter", timeout=20, path="/conf")
        call.wait(30)
        # the room ended with its only member: FreeSWITCH closed the file and callfork converted it
        recordings = stack.data_dir / "recordings"
        mp3 = wait_until(lambda: not list(recordings.glob("*.wav")) and list(recordings.glob("*.mp3")), 15,
                         "the MP3 in place of the WAV")
        import soundfile
        data, rate = soundfile.read(str(mp3[0]), dtype="int16", always_2d=True)
        assert _windows(data[:, 0], [500], [], rate=rate) >= 5


@switch_modes()
def test_rest_deaf_play_record_and_hangup_every_room(real_fs):
    with Stack(real=real_fs) as stack:
        import io
        import soundfile
        wav = io.BytesIO()
        soundfile.write(wav, tone(900, 1, level=9000), 8000, subtype="PCM_16", format="WAV")
        stack.app.document("/beep.wav", wav.getvalue(), content_type="audio/wav")
        stack.app.document("/answer", _doc(stack, "api room", stayAlone="true"))
        calls = [_join(stack, 1, hangup_after=60, to="1001"), _join(stack, 2, hangup_after=60, to="1002")]
        ids = [e["ConferenceMemberID"] for e in _enters(stack)]

        reply = _api(stack, "POST", "/Conference/api room/Member/all/Deaf/")
        assert reply.status_code == 202 and sorted(reply.json()["member_id"]) == sorted(ids)
        room = _api(stack, "GET", "/Conference/api room/").json()
        assert all(m["deaf"] for m in room["members"]) and not any(m["muted"] for m in room["members"])
        assert _api(stack, "DELETE", "/Conference/api room/Member/all/Deaf/").status_code == 204
        room = _api(stack, "GET", "/Conference/api room/").json()
        assert not any(m["deaf"] for m in room["members"])

        reply = _api(stack, "POST", f"/Conference/api room/Member/{ids[0]}/Play/",
                     json={"url": stack.app.url("/beep.wav")})
        assert reply.status_code == 202 and reply.json()["member_id"] == [ids[0]], reply.text
        assert _api(stack, "POST", "/Conference/api room/Member/all/Play/", json={}).status_code == 400

        reply = _api(stack, "POST", "/Conference/api room/Record/")
        assert reply.status_code == 202 and reply.json()["url"].endswith(".wav"), reply.text
        assert _api(stack, "DELETE", "/Conference/api room/Record/").status_code == 204
        assert _api(stack, "POST", "/Conference/no such room/Record/").status_code == 404

        assert _api(stack, "DELETE", "/Conference/").status_code == 204
        for call in calls:
            call.wait(30)
        # FreeSWITCH's conference thread takes the room away a moment after its last member left,
        # which can be after the callers' ends are seen here: the list becomes empty
        wait_until(lambda: _api(stack, "GET", "/Conference/").json()["conferences"] == [], 10, "no room left")


def test_room_names_are_per_account_and_reversible():
    from verbs import fs_room_name, vobiz_room_name
    for room in ("sales", "Sales Room", "a@b+c{d}", "ünïcode 1", "x.2e"):
        fs = fs_room_name("MA_LOCAL", room)
        assert " " not in fs and "@" not in fs and "+" not in fs
        assert vobiz_room_name("MA_LOCAL", fs) == room
        assert vobiz_room_name("MA_OTHER", fs) is None
    assert fs_room_name("MA_LOCAL", "sales") != fs_room_name("MA_LOCAL", "Sales")
    assert vobiz_room_name("MA_LOCAL", "sales") is None


def test_validate_calls_a_conference_document_valid(tmp_path):
    from verbs import validate_source
    path = tmp_path / "conf.xml"
    path.write_text('<Response><Conference callbackUrl="https://app.example/cb" maxMembers="3" '
                    'waitSound="https://app.example/wait">room 1</Conference><Speak>bye</Speak></Response>')
    code, text = validate_source(str(path))
    assert code == 0 and "valid Vobiz XML" in text and "not supported" not in text, text


@switch_modes()
def test_rest_transfer_takes_the_member_out_to_the_new_document(real_fs):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", _doc(stack, "moving room", stayAlone="true", action=stack.app.url("/act")))
        stack.app.document("/moved", "<Response><Hangup/></Response>")
        call = stack.call(to="1001", hangup_after=60)
        enter = stack.app.wait_event("ConferenceEnter", timeout=20, path="/conf").form
        reply = _api(stack, "POST", f"/Call/{enter['CallUUID']}/", data={"legs": "aleg",
                                                                          "aleg_url": stack.app.url("/moved")})
        assert reply.status_code == 202, reply.text
        stack.app.wait_path("/moved", timeout=15)
        stack.app.wait_event("ConferenceExit", timeout=10, path="/conf")
        call.wait(30)
        assert not _requests(stack, "/act")

