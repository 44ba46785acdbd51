"""<Dial>: the caller is handed to a callee, on the simulator and (marked `freeswitch`) on a real
FreeSWITCH, and the app gets the DialAction result and the callbackUrl events of every leg.

The callee is another number of the same callfork: the Dial's dial string is a loopback call to it
(`[freeswitch] originate_dialstring`), so its own answer document decides what it does (answer and
play a tone, refuse as busy, never answer). The caller speaks a 300 Hz tone, the callee plays
700 Hz: the caller's heard audio must hold the callee's tone, and the callee's session recording
(its read channel) the caller's.
"""
import requests

from dial_support import CALLEE_HZ, CALLER_HZ, channel, channels, dial_stack
from dial_support import hangup_of as _hangup_of, wait_dial_events as _wait_dial_events
from harness import switch_modes
from stream_scenarios import Calls, tone, windows_with, write_wav

_stack = dial_stack


def _press(stack, call, digits):
    """The caller presses `digits` now."""
    if stack.real_fs:
        stack.service.control.api(f"uuid_send_dtmf {call.a_uuid} {digits}")
    else:
        for digit in digits:
            call.channel.queue_dtmf(digit)


def _hang_up_caller(stack, call):
    if stack.real_fs:
        stack.service.control.api(f"uuid_kill {call.a_uuid} NORMAL_CLEARING")
    else:
        call.channel.hangup("NORMAL_CLEARING")


@switch_modes()
def test_dial_connects_the_caller_and_the_callee(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 6.0))
        calls.add(p + "77", f'<Response><Record recordSession="true" fileFormat="wav" '
                            f'callbackUrl="{calls.url("/callee-rec")}"/><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Speak>Connecting you</Speak>'
                           f'<Dial action="{calls.url("/dial-action")}" callbackUrl="{calls.url("/dial-events")}" '
                           f'callerId="15550001111"><Number>77</Number></Dial></Response>')
        calls.stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=40)
        action = stack.app.wait_event("DialAction", timeout=40).form
        summary = call.wait(30)
        heard = call.heard()
        events = _wait_dial_events(stack, 3)
        rec = stack.app.wait_event("RecordStop", timeout=20).form
        recording = requests.get(rec["RecordUrl"], headers=stack.api_headers(), timeout=5)

    a_uuid = action["CallUUID"]
    assert action["DialStatus"] == "completed"
    assert action["DialRingStatus"] == "true"
    assert action["DialALegUUID"] == a_uuid
    b_uuid = action["DialBLegUUID"]
    assert b_uuid and b_uuid != a_uuid
    assert action["DialHangupCause"] == "NORMAL_CLEARING"
    assert summary["answered"] is True

    assert [e["Event"] for e in events] == ["DialAnswer", "DialConnected", "DialHangup"]
    for e in events:
        assert e["CallUUID"] == a_uuid and e["DialALegUUID"] == a_uuid and e["DialBLegUUID"] == b_uuid
        assert e["DialBLegTo"] == "77" and e["DialBLegFrom"] == "15550001111" and e["DialBLegPosition"] == "1"
    hangup = events[-1]
    assert hangup["DialAction"] == "hangup"
    assert hangup["DialBLegHangupCause"] == "NORMAL_CLEARING"
    assert hangup["DialBLegHangupCauseCode"] == "4000"
    assert hangup["DialBLegHangupSource"] == "Callee"
    assert 4 <= int(hangup["DialBLegDuration"]) <= 10

    # the caller heard the callee's tone for most of its 6 s
    assert windows_with(heard, CALLEE_HZ) >= 30, windows_with(heard, CALLEE_HZ)
    # the callee's recording: its read channel (left) is what the caller said
    assert recording.status_code == 200
    assert windows_with(channel(recording, 0), CALLER_HZ) >= 30


@switch_modes()
def test_dial_busy_callee_runs_the_next_elements(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "78", '<Response><Hangup reason="busy"/></Response>')
        calls.add(p + "1", f'<Response><Dial action="{calls.url("/dial-action")}" redirect="false" '
                           f'callbackUrl="{calls.url("/dial-events")}"><Number>78</Number></Dial>'
                           f'<Speak>They are busy</Speak><Hangup/></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        action = stack.app.wait_event("DialAction", timeout=30).form
        call.wait(30)
        events = _wait_dial_events(stack, 1)
        hangup = _hangup_of(stack, action["CallUUID"])

    assert action["DialStatus"] == "busy"
    assert action["DialBLegUUID"] == ""
    assert action["DialHangupCause"] == "USER_BUSY"
    assert [e["Event"] for e in events] == ["DialHangup"]
    assert events[0]["DialBLegHangupCause"] == "USER_BUSY"
    assert events[0]["DialBLegHangupCauseCode"] == "3010"
    # the elements after </Dial> ran: the document's <Hangup/> ended the call
    assert hangup["HangupSource"] == "Answer XML"


@switch_modes()
def test_dial_no_answer_after_the_ring_timeout(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "79", '<Response><Wait length="30"/><Speak>too late</Speak></Response>')
        calls.add(p + "1", f'<Response><Dial action="{calls.url("/dial-action")}" timeout="3" '
                           f'callbackUrl="{calls.url("/dial-events")}"><Number>79</Number></Dial></Response>')
        calls.stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        action = stack.app.wait_event("DialAction", timeout=30).form
        call.wait(30)
        events = _wait_dial_events(stack, 1)

    assert action["DialStatus"] == "no-answer"
    assert action["DialHangupCause"] == "NO_ANSWER"
    assert action["DialBLegUUID"] == ""
    hangup = events[-1]
    assert hangup["Event"] == "DialHangup"
    assert hangup["DialBLegHangupCauseCode"] == "6010"
    assert hangup["DialBLegHangupCauseName"] == "Ring Timeout Reached"
    assert hangup["DialBLegHangupSource"] == "Vobiz"


@switch_modes()
def test_dial_rings_two_callees_at_once_and_the_loser_ends_with_lose_race(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 3.0))
        calls.add(p + "80", f'<Response><Wait length="1"/><Play>{callee_tone}</Play></Response>')
        calls.add(p + "81", '<Response><Wait length="30"/></Response>')
        calls.add(p + "1", f'<Response><Dial action="{calls.url("/dial-action")}" '
                           f'callbackUrl="{calls.url("/dial-events")}"><Number>81</Number><Number>80</Number>'
                           f'</Dial></Response>')
        calls.stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        action = stack.app.wait_event("DialAction", timeout=30).form
        call.wait(30)
        events = _wait_dial_events(stack, 4)

    assert action["DialStatus"] == "completed"
    by_leg = {}
    for e in events:
        by_leg.setdefault(e["DialBLegTo"], []).append(e)
    winner, loser = by_leg["80"], by_leg["81"]
    assert action["DialBLegUUID"] == winner[0]["DialBLegUUID"]
    assert [e["Event"] for e in winner] == ["DialAnswer", "DialConnected", "DialHangup"]
    assert winner[0]["DialBLegPosition"] == "2"
    assert [e["Event"] for e in loser] == ["DialHangup"]
    assert loser[0]["DialBLegPosition"] == "1"
    assert loser[0]["DialBLegHangupCause"] == "LOSE_RACE"
    assert loser[0]["DialBLegHangupCauseCode"] == "9000"
    assert loser[0]["DialBLegHangupCauseName"] == "Lost Race"
    assert loser[0]["DialBLegHangupSource"] == "Vobiz"


@switch_modes()
def test_dial_caller_hangs_up_while_the_callee_rings(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "79", '<Response><Wait length="30"/></Response>')
        calls.add(p + "1", f'<Response><Speak>Please hold</Speak><Dial action="{calls.url("/dial-action")}" '
                           f'timeout="25" callbackUrl="{calls.url("/dial-events")}"><Number>79</Number></Dial>'
                           f'</Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        # the callee's call has reached its app: it rings; the caller hangs up now
        assert stack.app.wait_for(lambda: any(r.form.get("To") == p + "79" for r in list(stack.app.requests)
                                              if r.path == "/answer"), 20), "the callee's call never reached its app"
        _hang_up_caller(stack, call)
        action = stack.app.wait_event("DialAction", timeout=30).form
        call.wait(30)
        events = _wait_dial_events(stack, 1)
        hangup = _hangup_of(stack, action["CallUUID"])

    assert action["DialStatus"] == "cancel"
    assert action["DialBLegUUID"] == ""
    assert events[-1]["Event"] == "DialHangup"
    assert events[-1]["DialBLegHangupSource"] == "Caller", str(sorted(events[-1].items()))
    assert events[-1]["DialBLegHangupCause"] == "ORIGINATOR_CANCEL"
    assert events[-1]["DialBLegHangupCauseCode"] == "1000"
    assert hangup["HangupSource"] == "Caller"


@switch_modes()
def test_dial_hangup_on_star_ends_the_bridge_and_the_document_goes_on(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 20.0))
        calls.add(p + "77", f'<Response><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Dial hangupOnStar="true" redirect="false" '
                           f'action="{calls.url("/dial-action")}" callbackUrl="{calls.url("/dial-events")}">'
                           f'<Number>77</Number></Dial><Hangup/></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        _wait_dial_events(stack, 2)          # DialConnected: bridged
        _press(stack, call, "*")
        action = stack.app.wait_event("DialAction", timeout=30).form
        call.wait(30)
        events = _wait_dial_events(stack, 3)
        hangup = _hangup_of(stack, action["CallUUID"])

    assert action["DialStatus"] == "completed"
    assert [e["Event"] for e in events] == ["DialAnswer", "DialConnected", "DialHangup"]
    assert int(events[-1]["DialBLegDuration"]) <= 8
    # redirect="false": the <Hangup/> after </Dial> ran, long before the callee's 20 s tone ended
    assert hangup["HangupSource"] == "Answer XML"
    assert int(hangup["Duration"]) < 15


@switch_modes()
def test_dial_time_limit_ends_the_bridge(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 20.0))
        calls.add(p + "77", f'<Response><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Dial timeLimit="3" action="{calls.url("/dial-action")}" '
                           f'callbackUrl="{calls.url("/dial-events")}"><Number>77</Number></Dial></Response>')
        calls.stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        action = stack.app.wait_event("DialAction", timeout=30).form
        call.wait(30)
        events = _wait_dial_events(stack, 3)

    assert action["DialStatus"] == "completed"
    assert action["DialHangupCause"] == "ALLOTTED_TIMEOUT"
    hangup = events[-1]
    assert hangup["DialBLegHangupCause"] == "ALLOTTED_TIMEOUT"
    assert hangup["DialBLegHangupCauseCode"] == "6000"
    assert 2 <= int(hangup["DialBLegDuration"]) <= 5


@switch_modes()
def test_a_background_stream_hears_both_parties_through_the_bridge(tmp_path, real_fs):
    from stream_scenarios import media, messages, payload_bytes, pcm
    from wsapp import AppServer as WsApp
    ws = WsApp()
    ws.start()
    try:
        stack, p = _stack(real_fs)
        with stack:
            calls = Calls(stack)
            callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 5.0))
            calls.add(p + "77", f'<Response><Play>{callee_tone}</Play></Response>')
            calls.add(p + "1", f'<Response><Stream audioTrack="both" keepCallAlive="false">{ws.url}</Stream>'
                               f'<Dial><Number>77</Number></Dial></Response>')
            caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
            call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
            conn = ws.wait_connection(timeout=20)
            call.wait(40)
            assert conn.closed.wait(10)
            msgs = messages(conn)
    finally:
        ws.stop()
    inbound = pcm(payload_bytes(media(msgs, "inbound")))
    outbound = pcm(payload_bytes(media(msgs, "outbound")))
    assert windows_with(inbound, CALLER_HZ) >= 30          # the caller, all along
    assert windows_with(outbound, CALLEE_HZ) >= 30         # the callee's voice, through the bridge


@switch_modes()
def test_dial_music_document_plays_while_the_callee_rings(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        music = calls.serve_wav("/music.wav", tone(1200, 1.0))
        stack.app.document("/music", f'<Response><Play loop="0">{music}</Play></Response>')
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 3.0))
        calls.add(p + "77", f'<Response><Wait length="4"/><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Speak>Hold on</Speak><Dial dialMusic="{calls.url("/music")}">'
                           f'<Number>77</Number></Dial></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
        call.wait(40)
        heard = call.heard()
    music_windows = windows_with(heard, 1200)
    assert music_windows >= 20, music_windows             # ~4 s of ringing: the music, not a tone
    assert windows_with(heard, CALLEE_HZ) >= 20            # then the callee


@switch_modes()
def test_dial_confirm_key_connects_only_a_callee_that_presses_it(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 4.0))
        prompt = calls.serve_wav("/prompt.wav", tone(500, 0.5))
        stack.app.document("/confirm", f'<Response><Play>{prompt}</Play></Response>')
        # 82 presses the wrong key, 83 the right one after a moment
        calls.add(p + "82", f'<Response><Play>{prompt}</Play><DTMF>2</DTMF><Wait length="10"/></Response>')
        calls.add(p + "83", f'<Response><Wait length="1"/><Play>{prompt}</Play><DTMF>5</DTMF>'
                            f'<Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Dial confirmSound="{calls.url("/confirm")}" confirmKey="5" '
                           f'action="{calls.url("/dial-action")}" callbackUrl="{calls.url("/dial-events")}">'
                           f'<Number>82</Number><Number>83</Number></Dial></Response>')
        stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 15.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=40)
        action = stack.app.wait_event("DialAction", timeout=40).form
        call.wait(30)
        events = _wait_dial_events(stack, 4)
        heard = call.heard()
    assert action["DialStatus"] == "completed"
    connected = [e for e in events if e["Event"] == "DialConnected"]
    assert len(connected) == 1 and connected[0]["DialBLegTo"] == "83"
    assert action["DialBLegUUID"] == connected[0]["DialBLegUUID"]
    assert windows_with(heard, CALLEE_HZ) >= 20


@switch_modes()
def test_dial_digits_match_reports_what_the_caller_pressed(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 8.0))
        calls.add(p + "77", f'<Response><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Dial digitsMatch="*9,#12" callbackUrl="{calls.url("/dial-events")}">'
                           f'<Number>77</Number></Dial></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 15.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        _wait_dial_events(stack, 2)          # DialConnected: bridged
        _press(stack, call, "#12")
        call.wait(40)
        events = _wait_dial_events(stack, 4)
    matched = [e for e in events if e["Event"] == "DialDigitsMatch"]
    assert len(matched) == 1, [e["Event"] for e in events]
    assert matched[0]["DialDigitsMatch"] == "#12"
    assert matched[0]["DialDigitsPressedBy"] == "aleg"
    assert matched[0]["DialAction"] == "digits"


@switch_modes()
def test_record_in_dial_records_both_parties_of_the_bridge(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 5.0))
        calls.add(p + "77", f'<Response><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Dial><Record action="{calls.url("/rec")}" fileFormat="wav" '
                           f'callbackUrl="{calls.url("/rec-ready")}"/><Number>77</Number></Dial></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 15.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        call.wait(40)
        rec = stack.app.wait_event("Record", timeout=10, path="/rec").form
        stop = stack.app.wait_event("RecordStop", timeout=10, path="/rec-ready").form
        recording = requests.get(rec["RecordUrl"], headers=stack.api_headers(), timeout=5)
    assert stop["RecordingID"] == rec["RecordingID"]
    assert 4000 <= int(rec["RecordingDurationMs"]) <= 8000
    assert channels(recording) == 2
    assert windows_with(channel(recording, 0), CALLER_HZ) >= 30     # the caller
    assert windows_with(channel(recording, 1), CALLEE_HZ) >= 30     # the callee


@switch_modes()
def test_record_in_dial_with_max_length_stops_at_the_limit_while_the_bridge_goes_on(tmp_path, real_fs):
    """maxLength="3" on a Dial's Record: 3 s recorded (FreeSWITCH's uuid_record alone stops on a whole
    second of its clock, up to 1 s early), ended by maxLength, while the bridge runs on."""
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 8.0))
        calls.add(p + "77", f'<Response><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Dial action="{calls.url("/dial-action")}" callbackUrl="{calls.url("/dial-events")}">'
                           f'<Record action="{calls.url("/rec")}" fileFormat="wav" maxLength="3"/>'
                           f'<Number>77</Number></Dial></Response>')
        stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 15.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        call.wait(40)
        rec = stack.app.wait_event("Record", timeout=10, path="/rec").form
        hangup = stack.app.wait_event("DialHangup", timeout=10, path="/dial-events").form
        recording = requests.get(rec["RecordUrl"], headers=stack.api_headers(), timeout=5)
    assert 2900 <= int(rec["RecordingDurationMs"]) <= 3200, rec
    assert rec["RecordingEndReason"] == "maxLength", rec
    assert int(hangup["DialBLegDuration"]) >= 6, hangup   # the bridge went on (the callee's 8 s)
    audio = channel(recording, 0)
    assert 2.9 <= len(audio) / 8000 <= 3.2
    assert windows_with(channel(recording, 1), CALLEE_HZ) >= 20     # the callee, in the 3 s


@switch_modes()
def test_dial_send_digits_reach_the_callee(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "77", f'<Response><GetDigits action="{calls.url("/callee-digits")}" numDigits="3" '
                            f'timeout="12"/></Response>')
        # the callee's GetDigits must be running when the digits come (it drops digits that came
        # before it): on a loaded machine 1 s (ww) and then, in a full real-switch run, 3 s (WWW) were
        # each once too short for its document to start; 5 s of W leave room
        calls.add(p + "1", '<Response><Dial><Number sendDigits="WWWWW123">77</Number></Dial></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 15.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        got = stack.app.wait_path("/callee-digits", timeout=30)[0].form
        call.wait(40)
    assert got["Digits"] == "123"


@switch_modes()
def test_dial_caller_hangs_up_during_the_bridge(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 20.0))
        calls.add(p + "77", f'<Response><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Dial action="{calls.url("/dial-action")}" '
                           f'callbackUrl="{calls.url("/dial-events")}"><Number>77</Number></Dial></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        _wait_dial_events(stack, 2)          # DialConnected: bridged
        _hang_up_caller(stack, call)
        action = stack.app.wait_event("DialAction", timeout=30).form
        call.wait(30)
        events = _wait_dial_events(stack, 3)
        hangup = _hangup_of(stack, action["CallUUID"])
    assert action["DialStatus"] == "completed" and action["DialBLegUUID"]
    assert [e["Event"] for e in events] == ["DialAnswer", "DialConnected", "DialHangup"]
    assert events[-1]["DialBLegHangupSource"] == "Caller"
    assert events[-1]["DialBLegHangupCauseCode"] == "4000"
    assert hangup["HangupSource"] == "Caller"


@switch_modes()
def test_a_rest_transfer_ends_the_bridge_and_runs_the_new_document(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 20.0))
        calls.add(p + "77", f'<Response><Play>{callee_tone}</Play></Response>')
        calls.add(p + "1", f'<Response><Dial callbackUrl="{calls.url("/dial-events")}"><Number>77</Number>'
                           f'</Dial></Response>')
        stack.app.document("/moved", "<Response><Speak>Moved</Speak><Hangup/></Response>")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        connected = _wait_dial_events(stack, 2)[1]
        assert connected["Event"] == "DialConnected"
        a_uuid = connected["CallUUID"]
        reply = requests.post(stack.api_url(f"/Call/{a_uuid}/"), headers=stack.api_headers(),
                              data={"legs": "aleg", "aleg_url": stack.app.url("/moved")}, timeout=5)
        assert reply.status_code in (200, 202), reply.text
        stack.app.wait_path("/moved", timeout=10)
        call.wait(30)
        hangup = _hangup_of(stack, a_uuid)
        events = _wait_dial_events(stack, 3)
    assert events[-1]["Event"] == "DialHangup"
    assert events[-1]["DialBLegHangupSource"] == "API Request"
    assert hangup["HangupSource"] == "Answer XML"
    assert int(hangup["Duration"]) < 15


@switch_modes()
def test_rest_play_and_dtmf_reach_the_bridged_callee(tmp_path, real_fs):
    """The live-call API's legs=bleg finds the leg a <Dial> bridged: the callee hears a Play and
    gets the digits."""
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        prompt = calls.serve_wav("/prompt.wav", tone(500, 8.0))
        calls.add(p + "77", f'<Response><Record recordSession="true" fileFormat="wav" '
                            f'callbackUrl="{calls.url("/callee-rec")}"/><GetDigits action="{calls.url("/callee-digits")}" '
                            f'numDigits="2" timeout="15"><Play>{prompt}</Play></GetDigits></Response>')
        stack.app.document("/callee-digits", '<Response><Wait length="3"/></Response>')
        calls.add(p + "1", f'<Response><Dial callbackUrl="{calls.url("/dial-events")}"><Number>77</Number>'
                           f'</Dial></Response>')
        music = calls.serve_wav("/1200.wav", tone(1200, 2.0))
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        connected = _wait_dial_events(stack, 2)[1]
        a_uuid = connected["CallUUID"]
        # the callee's GetDigits is collecting once its prompt plays (digits pressed before it are dropped)
        def callee_uuids():
            return [r.form["CallUUID"] for r in list(stack.app.requests)
                    if r.path == "/answer" and r.form.get("To") == p + "77"]
        assert stack.app.wait_for(callee_uuids, 10)
        callee = callee_uuids()[0]
        control = stack.service.control
        stack.wait(lambda: control.api(f"uuid_getvar {callee} current_application").strip() == "playback", 15)
        headers = stack.api_headers()
        play = requests.post(stack.api_url(f"/Call/{a_uuid}/Play/"), json={"urls": music, "legs": "bleg"},
                             headers=headers, timeout=30)
        assert play.status_code == 202, play.text
        digits = requests.post(stack.api_url(f"/Call/{a_uuid}/DTMF/"), json={"digits": "42", "leg": "bleg"},
                               headers=headers, timeout=30)
        assert digits.status_code == 202, digits.text
        got = stack.app.wait_path("/callee-digits", timeout=20)[0].form
        call.wait(40)
        rec = stack.app.wait_event("RecordStop", timeout=20).form
        recording = requests.get(rec["RecordUrl"], headers=headers, timeout=5)
    assert got["Digits"] == "42"
    assert windows_with(channel(recording, 0), 1200) >= 10     # the callee heard the Play


@switch_modes()
def test_a_callee_s_early_media_is_not_its_answer(tmp_path, real_fs):
    """A callee that plays early media (a carrier's announcement) and never answers: the caller
    hears it while it rings, and the Dial ends at its timeout, unanswered."""
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        early = calls.serve_wav("/early.wav", tone(1200, 8.0))
        calls.add(p + "84", f'<Response><PreAnswer><Play>{early}</Play></PreAnswer><Wait length="20"/></Response>')
        calls.add(p + "1", f'<Response><Dial timeout="4" action="{calls.url("/dial-action")}" '
                           f'callbackUrl="{calls.url("/dial-events")}"><Number>84</Number></Dial></Response>')
        stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 15.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
        action = stack.app.wait_event("DialAction", timeout=30).form
        call.wait(30)
        events = _wait_dial_events(stack, 1)
        heard = call.heard()
    assert action["DialStatus"] == "no-answer", action
    assert action["DialRingStatus"] == "true" and action["DialBLegUUID"] == ""
    assert [e["Event"] for e in events] == ["DialHangup"]
    assert windows_with(heard, 1200) >= 15      # the early media reached the caller while it rang


def test_dial_user_rings_a_sip_uri_with_its_headers(tmp_path):
    """<User> on the simulator (a scripted SIP callee; on the real switch a SIP phone of the tests
    answers instead: tests/test_scenario_dial_user.py): the leg goes through [freeswitch] sip_dialstring with the X-VH- headers, its callbacks carry them,
    and the caller hears the callee."""
    import json as jsonlib
    stack, _p = _stack(False)
    with stack:
        calls = Calls(stack)
        callee_wav = write_wav(tmp_path / "callee.wav", tone(CALLEE_HZ, 4.0))
        reply = stack.sim.run_api("sim_callee", jsonlib.dumps({"match": "sip:agent@example.com", "answer_after": 0.5,
                                                               "audio": str(callee_wav), "hangup_after": 4}))
        assert reply.startswith("+OK"), reply
        calls.add("1", f'<Response><Dial sipHeaders="Team=ops" callbackUrl="{calls.url("/dial-events")}">'
                       f'<User sipHeaders="ReasonX-VH=billing">sip:agent@example.com</User></Dial></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
        connected = _wait_dial_events(stack, 2)[1]
        leg = stack.sim.get_channel(connected["DialBLegUUID"])
        assert leg is not None and leg.name.startswith("sofia/internal/")
        assert leg.get_variable("sip_h_X-VH-Reason") == "billing" and leg.get_variable("sip_h_X-VH-Team") == "ops"
        call.wait(30)
        events = _wait_dial_events(stack, 3)
    assert connected["DialBLegTo"] == "sip:agent@example.com"
    for e in events:
        assert e["X-VH-Reason"] == "billing" and e["X-VH-Team"] == "ops"
    assert windows_with(call.heard(), CALLEE_HZ) >= 25
