"""The newcomer's scenario (issue "Vobiz XML engine", done-when): a voicemail document — Speak,
Record, Hangup — on the simulator gives the recording, the RecordStop callback and the hangup
webhook with the documented fields."""
import numpy as np
import requests
import soundfile

from harness import Stack, switch_modes

VOICEMAIL = """<Response>
  <Speak voice="WOMAN" language="en-US">Please leave a message after the beep.</Speak>
  <Record action="{app}/rec-action" method="POST" fileFormat="wav" redirect="false" timeout="2"
          maxLength="20" playBeep="true" finishOnKey="#" callbackUrl="{app}/rec-ready" callbackMethod="POST"/>
  <Hangup/>
</Response>"""


def speech_wav(path, seconds=9.0, talk_from=3.5, talk_until=6.0, rate=8000):
    """The caller waits for the prompt and the beep (~3 s), talks 2.5 s, then is silent."""
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 300 * t) * ((t >= talk_from) & (t < talk_until))
    soundfile.write(str(path), (audio * 32767).astype(np.int16), rate)
    return path


@switch_modes()
def test_voicemail_records_and_posts_record_stop_and_hangup(tmp_path, real_fs):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", VOICEMAIL.format(app=stack.app.url("").rstrip("/")))
        call = stack.call(audio=str(speech_wav(tmp_path / "caller.wav")), hangup_after=30)
        summary = call.wait(40)
        stop = stack.app.wait_event("RecordStop", timeout=10).form
        action = stack.app.wait_event("Record", timeout=10).form
        hangup = stack.app.wait_event("Hangup", timeout=10).form

    assert summary["answered"] is True
    # recording starts after prompt + beep (~3 s), the caller talks until 6 s, then
    # timeout=2 s of silence ends it: about 5 s
    assert stop["RecordingEndReason"] == "RecordingTimeout"
    assert 3500 <= int(stop["RecordingDurationMs"]) <= 8000
    assert stop["RecordingID"] == action["RecordingID"]
    for field in ("RecordUrl", "RecordFile", "RecordingDuration", "RecordingStartMs", "RecordingEndMs",
                  "CallUUID", "From", "To", "Direction", "CallStatus", "ParentAuthID", "SessionStart"):
        assert field in stop, field
    assert stop["RecordUrl"].endswith(f"/recordings/{stop['RecordingID']}.wav")
    # the document's <Hangup/> ends the answered call: 4000 Normal Hangup, by the XML
    assert hangup["HangupCauseCode"] == "4000"
    assert hangup["HangupCauseName"] == "Normal Hangup"
    assert hangup["HangupSource"] == "Answer XML"
    assert hangup["HangupCause"] == "NORMAL_CLEARING"
    for field in ("Duration", "BillDuration", "StartTime", "AnswerTime", "EndTime", "CallUUID"):
        assert hangup[field], field


@switch_modes()
def test_recording_is_served_with_auth(tmp_path, real_fs):
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", VOICEMAIL.format(app=stack.app.url("").rstrip("/")))
        call = stack.call(audio=str(speech_wav(tmp_path / "caller.wav")), hangup_after=30)
        call.wait(40)
        stop = stack.app.wait_event("RecordStop", timeout=10).form
        url = stop["RecordUrl"]
        assert requests.get(url, timeout=5).status_code == 401
        resp = requests.get(url, headers=stack.api_headers(), timeout=5)
        assert resp.status_code == 200
        path = tmp_path / "rec.wav"
        path.write_bytes(resp.content)
        audio, rate = soundfile.read(str(path), dtype="int16")
        # the caller's 300 Hz tone is in the file
        assert rate == 8000 and np.abs(audio).max() > 3000


def test_recordings_public_serves_a_recording_without_credentials_and_still_404s_unknown_ones(tmp_path):
    """[server] recordings_public = true: a RecordUrl (a random UUID) is fetched without credentials,
    as a Twilio app fetches a RecordingUrl from an account without HTTP auth on media; the rest of
    the API still needs them."""
    with Stack(env={"CALLFORK_SERVER_RECORDINGS_PUBLIC": "true"}) as stack:
        stack.app.document("/answer", VOICEMAIL.format(app=stack.app.url("").rstrip("/")))
        call = stack.call(audio=str(speech_wav(tmp_path / "caller.wav")), hangup_after=30)
        call.wait(40)
        stop = stack.app.wait_event("RecordStop", timeout=10).form
        resp = requests.get(stop["RecordUrl"], timeout=5)
        as_mp3 = requests.get(stop["RecordUrl"].rsplit(".", 1)[0] + ".mp3", timeout=10)
        unknown = requests.get(stop["RecordUrl"].rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000.wav",
                               timeout=5)
        calls_api = requests.get(stack.api_url("/Call/"), timeout=5)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("audio/")
    path = tmp_path / "rec.wav"
    path.write_bytes(resp.content)
    audio, rate = soundfile.read(str(path), dtype="int16")
    assert rate == 8000 and np.abs(audio).max() > 3000   # the caller's tone
    head = as_mp3.content[:3]
    assert as_mp3.status_code == 200 and as_mp3.headers["Content-Type"] == "audio/mpeg"
    assert head == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0)   # a tag, or an MPEG frame's sync
    assert unknown.status_code == 404
    assert calls_api.status_code == 401


@switch_modes()
def test_voicemail_from_a_phone_that_sends_nothing_while_silent(tmp_path, real_fs):
    """A phone that suppresses silence (no packets: FreeSWITCH reads CNG) talks 2.5 s, then says
    nothing: FreeSWITCH's `record` keeps no CNG frame, so without record_fill_cng the file would
    hold only the 2.5 s of talk; callfork sets it, and the recording lasts as long as it ran
    (talk, then the 2 s silence timeout), as with a phone that sends silence."""
    with Stack(real=real_fs) as stack:
        stack.app.document("/answer", VOICEMAIL.format(app=stack.app.url("").rstrip("/")))
        call = stack.call(audio=str(speech_wav(tmp_path / "caller.wav")), hangup_after=30, vad=True)
        call.wait(40)
        stop = stack.app.wait_event("RecordStop", timeout=10).form
    assert stop["RecordingEndReason"] == "RecordingTimeout"
    assert 3500 <= int(stop["RecordingDurationMs"]) <= 8000
