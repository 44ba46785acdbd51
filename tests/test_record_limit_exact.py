"""A recording's time limit is the length asked for, on the simulator and (marked `freeswitch`) a
real FreeSWITCH: REST Record `time_limit=3` and `<Record recordSession="true" maxLength="3">` give
a file of 2.9-3.2 s, and callbacks that say so (RecordingEndReason maxLength, the duration in ms
and in whole seconds).

FreeSWITCH's own limit ends on a whole second of its clock, up to 1 s early
(tests/fixtures/fs-captures/record-limit.json); callfork stops the recording itself
(verbs/recording.py, BackgroundRecording.arm_limit). The document plays a tone while it records,
so the call's leg writes audio from the recording's start.
"""
import io

import requests
import soundfile

from harness import Stack, switch_modes
from stream_scenarios import tone, windows_with
from test_api_live_controls import CALLER_HZ, Docs, _call, _live_uuid, _post, _wait_app

LIMIT_S = 3
LOW_MS, HIGH_MS = 2900, 3200


def _file_ms(stack, url):
    got = requests.get(url, headers=stack.api_headers(), timeout=10)
    assert got.status_code == 200, got.status_code
    data, rate = soundfile.read(io.BytesIO(got.content), dtype="int16", always_2d=True)
    return len(data) * 1000 / rate, data, rate


@switch_modes()
def test_rest_record_time_limit_is_exact(tmp_path, real_fs):
    with Stack(real=real_fs) as stack:
        docs = Docs(stack)
        docs.add("1", f'<Response><Play>{docs.serve_wav("/900.wav", tone(900, 9.0))}</Play></Response>')
        call = _call(stack, tmp_path, seconds=9)
        uuid = _live_uuid(stack)
        _wait_app(stack, uuid, "playback")
        resp = _post(stack, uuid, "Record", {"time_limit": LIMIT_S, "file_format": "wav",
                                             "record_channel_type": "stereo", "callback_url": stack.app.url("/rec")})
        assert resp.status_code == 202, resp.text
        cb = stack.app.wait_path("/rec", timeout=15)[0].form
        assert cb["RecordingEndReason"] == "maxLength"
        duration_ms = int(cb["recording_duration_ms"])
        assert LOW_MS <= duration_ms <= HIGH_MS, cb
        assert int(cb["recording_duration"]) == LIMIT_S and int(cb["RecordingDuration"]) == LIMIT_S
        assert int(cb["recording_end_ms"]) - int(cb["recording_start_ms"]) == duration_ms
        file_ms, data, rate = _file_ms(stack, resp.json()["url"])
        assert LOW_MS <= file_ms <= HIGH_MS, file_ms
        assert abs(file_ms - duration_ms) <= 100, (file_ms, duration_ms)
        assert windows_with(data[:, 0], CALLER_HZ, rate=rate) >= 20      # the caller, most of the 3 s
        call.wait(30)


@switch_modes()
def test_record_session_max_length_is_exact(tmp_path, real_fs):
    with Stack(real=real_fs) as stack:
        docs = Docs(stack)
        docs.add("1", f'<Response><Record recordSession="true" maxLength="{LIMIT_S}" fileFormat="wav" '
                      f'callbackUrl="{docs.url("/rc")}"/>'
                      f'<Play>{docs.serve_wav("/900.wav", tone(900, 9.0))}</Play></Response>')
        call = _call(stack, tmp_path, seconds=9)
        stop = stack.app.wait_path("/rc", timeout=20)[0].form
        assert stop["Event"] == "RecordStop" and stop["RecordingEndReason"] == "maxLength"
        duration_ms = int(stop["RecordingDurationMs"])
        assert LOW_MS <= duration_ms <= HIGH_MS, stop
        assert int(stop["RecordingDuration"]) == LIMIT_S
        file_ms, data, rate = _file_ms(stack, stop["RecordUrl"])
        assert LOW_MS <= file_ms <= HIGH_MS, file_ms
        assert abs(file_ms - duration_ms) <= 100, (file_ms, duration_ms)
        assert windows_with(data[:, 1], 900, rate=rate) >= 20            # what the caller heard
        call.wait(30)


@switch_modes()
def test_record_max_length_is_exact(tmp_path, real_fs):
    """The voicemail form (FreeSWITCH's `record` app) stops at maxLength too, with the caller still speaking."""
    with Stack(real=real_fs) as stack:
        docs = Docs(stack)
        docs.add("1", f'<Response><Record maxLength="{LIMIT_S}" playBeep="false" fileFormat="wav" '
                      f'action="{docs.url("/ra")}" redirect="false"/><Wait length="3"/></Response>')
        call = _call(stack, tmp_path, seconds=9)
        done = stack.app.wait_path("/ra", timeout=20)[0].form
        assert done["Event"] == "Record" and done["RecordingEndReason"] == "maxLength", done
        duration_ms = int(done["RecordingDurationMs"])
        assert LOW_MS <= duration_ms <= HIGH_MS, done
        file_ms, data, rate = _file_ms(stack, done["RecordUrl"])
        assert LOW_MS <= file_ms <= HIGH_MS, file_ms
        assert windows_with(data[:, 0], CALLER_HZ, rate=rate) >= 20
        call.wait(30)
