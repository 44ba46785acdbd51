"""The Conference REST API's Speak and Record end to end, on the simulator and (marked `freeswitch`)
on a real FreeSWITCH whose conference profile has no tts-engine (the stock `default`): Speak to
`all` is heard by every member, Speak to one member by that member only (checked on what each
caller heard); Record in WAV and MP3 until DELETE or the room's end, with Plivo's callback naming
the file, which holds the room; a `<Conference record="true">` recording goes on after its member
hung up and the REST API stops it.
"""
import io

import gevent
import pytest
import requests
import soundfile

from harness import Stack, switch_modes
from stream_scenarios import rms, tone, tone_power, write_wav
from waiting import wait_until

SPEECH_RMS = 300            # a 100 ms window of speech is above this (int16 RMS); silence far below


def _doc(stack, room, **attrs):
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return (f'<Response><Conference callbackUrl="{stack.app.url("/conf")}" beep="false" stayAlone="true"'
            f'{extra}>{room}</Conference></Response>')


def _api(stack, method, path, **kw):
    return requests.request(method, stack.api_url(path), headers=stack.api_headers(), timeout=30, **kw)


def _speech_windows(samples, rate=8000):
    n = rate // 10
    return sum(1 for i in range(0, len(samples) - n + 1, n) if rms(samples[i:i + n]) >= SPEECH_RMS)


def _join(stack, count, **script):
    call = stack.call(to=f"100{count}", **script)
    stack.app.wait_event("ConferenceEnter", timeout=20, count=count, path="/conf")
    return call


@pytest.mark.parametrize("to", ["all", "one"])
@switch_modes()
def test_rest_speak_into_the_room_or_to_one_member(real_fs, to):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", _doc(stack, "speaking room"))
        calls = [_join(stack, i + 1, hangup_after=16, keep_heard=True) for i in range(3)]
        # the callers joined one after the other: the first enter is the first caller's
        first = stack.app.events("ConferenceEnter", path="/conf")[0].form["ConferenceMemberID"]
        target = "all" if to == "all" else first
        reply = _api(stack, "POST", f"/Conference/speaking room/Member/{target}/Speak/",
                     json={"text": "Hello, this is the conference speaking to you.", "voice": "MAN"})
        assert reply.status_code == 202, reply.text
        assert reply.json()["message"] == "speak queued into conference"
        assert len(reply.json()["member_id"]) == (3 if to == "all" else 1)
        for call in calls:
            call.wait(40)
        heard = [_speech_windows(call.heard()) for call in calls]
        assert heard[0] >= 10, heard                 # a second and more of speech
        if to == "all":
            assert min(heard) >= 10, heard
        else:
            assert max(heard[1:]) <= 2, heard          # the others heard nothing of it
        assert _api(stack, "POST", "/Conference/speaking room/Member/all/Speak/", json={}).status_code in (400, 404)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
@switch_modes()
def test_rest_record_until_delete_with_its_callback(real_fs, fmt):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", _doc(stack, "taped api room"))
        stack.app.document("/recorded", "")
        audio = write_wav(stack.data_dir / "tone-500.wav", tone(500, 30, level=9000))
        calls = [_join(stack, 1, hangup_after=30, audio=audio), _join(stack, 2, hangup_after=30)]
        body = {"callback_url": stack.app.url("/recorded")}
        if fmt == "mp3":
            body["file_format"] = "mp3"
        reply = _api(stack, "POST", "/Conference/taped api room/Record/", data=body)
        assert reply.status_code == 202, reply.text
        started = reply.json()
        assert started["url"].endswith("." + fmt) and started["message"] == "conference recording started"
        gevent.sleep(3)     # a measurement window: this much of the room is recorded before the stop
        assert _api(stack, "DELETE", "/Conference/taped api room/Record/").status_code == 204
        done = stack.app.wait_path("/recorded", timeout=20)[0].form
        assert done["record_url"] == started["url"] and done["recording_id"] == started["recording_id"]
        assert done["api_id"] == started["api_id"] and done["conference_name"] == "taped api room"
        assert 2000 <= int(done["recording_duration_ms"]) <= 8000, done
        assert int(done["recording_end_ms"]) - int(done["recording_start_ms"]) == int(done["recording_duration_ms"])
        got = requests.get(started["url"], headers=stack.api_headers(), timeout=10)
        assert got.status_code == 200
        assert got.headers["Content-Type"] == ("audio/mpeg" if fmt == "mp3" else "audio/wav")
        assert soundfile.info(io.BytesIO(got.content)).format == fmt.upper()
        data, rate = soundfile.read(io.BytesIO(got.content), dtype="int16", always_2d=True)
        assert 2.0 <= len(data) / rate <= 8.0
        assert tone_power(data[:, 0][rate // 2:-rate // 2], 500, rate) >= 0.3
        assert _api(stack, "DELETE", "/Conference/").status_code == 204
        for call in calls:
            call.wait(30)


@switch_modes()
def test_rest_recording_ends_with_the_room_and_calls_back(real_fs):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", _doc(stack, "closing room"))
        stack.app.document("/recorded", "")
        call = _join(stack, 1, hangup_after=4)
        reply = _api(stack, "POST", "/Conference/closing room/Record/",
                     data={"file_format": "mp3", "callback_url": stack.app.url("/recorded")})
        assert reply.status_code == 202, reply.text
        call.wait(30)
        done = stack.app.wait_path("/recorded", timeout=20)[0].form
        assert done["record_url"] == reply.json()["url"]
        assert soundfile.info(str(stack.data_dir / "recordings" / f"{done['recording_id']}.mp3")).format == "MP3"


@switch_modes()
def test_a_member_recording_is_stopped_by_rest_after_the_member_hung_up(real_fs):
    with Stack(real=real_fs) as stack:
        def answer(req):
            record = "true" if req.form.get("To", "").endswith("1001") else "false"
            return _doc(stack, "kept room", record=record, recordFileFormat="mp3")

        stack.app.document("/answer", answer)
        recorder = _join(stack, 1, hangup_after=3)
        audio = write_wav(stack.data_dir / "tone-500.wav", tone(500, 40, level=9000))
        other = _join(stack, 2, hangup_after=40, audio=audio)
        recorder.wait(30)
        stack.app.wait_event("ConferenceExit", timeout=15, path="/conf")
        recordings = stack.data_dir / "recordings"
        # the room goes on, and so does the recording the member started: no MP3 yet
        assert not list(recordings.glob("*.mp3"))
        assert _api(stack, "DELETE", "/Conference/kept room/Record/").status_code == 204
        mp3 = wait_until(lambda: not list(recordings.glob("*.wav")) and list(recordings.glob("*.mp3")), 20,
                         "the member's recording finished as MP3")
        data, rate = soundfile.read(str(mp3[0]), dtype="int16", always_2d=True)
        assert tone_power(data[:, 0][-rate:], 500, rate) >= 0.3     # it went on after the member left
        assert _api(stack, "DELETE", "/Conference/").status_code == 204
        other.wait(40)
