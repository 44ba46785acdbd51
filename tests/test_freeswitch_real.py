"""Scenarios against a real FreeSWITCH 1.10 with mod_audio_fork (marked `freeswitch`; they run only
when CALLFORK_FS_ESL=host:port:password is set, and the FreeSWITCH has freeswitch/'s dialplan:
`^callfork` numbers → `socket 127.0.0.1:8084 async full`, mod_loopback and mod_flite loaded).

The caller is the A leg of a loopback call that plays a tone; the B leg runs the dialplan and
reaches callfork, exactly as a carrier call would. The same scenarios run on the simulator in the
rest of the suite.
"""
import json

import pytest

from harness import Stack
from wsapp import AppServer as WsApp

pytestmark = pytest.mark.freeswitch


def _originate(stack, number: str, seconds: int = 12) -> str:
    """A loopback call to `number`; the A leg (the caller) plays a 440 Hz tone for `seconds`."""
    caller = f"tone_stream://L={seconds};%(1000,0,440)"
    return stack.service.control.bgapi(
        "originate {origination_caller_id_number=15551230001,origination_caller_id_name=callfork-test}"
        f"loopback/{number}/default &playback({caller})", timeout=30)


def test_control_connection_and_api():
    with Stack(real=True) as stack:
        status = stack.service.control.api("status")
        assert "UP" in status or "up" in status
        assert stack.service.control.connected


def test_speak_then_end_of_document_posts_the_hangup_webhook():
    with Stack(real=True) as stack:
        stack.app.document("/answer", "<Response><Speak>Hello from callfork.</Speak></Response>")
        assert _originate(stack, "callfork1").startswith("+OK")
        start = stack.app.wait_event("StartApp", timeout=20).form
        hangup = stack.app.wait_event("Hangup", timeout=30).form
    assert start["CallStatus"] == "ringing" and start["To"] == "callfork1"
    assert hangup["CallUUID"] == start["CallUUID"]
    assert hangup["HangupCauseCode"] == "4010"          # End Of XML Instructions
    assert hangup["AnswerTime"]


def test_bidirectional_stream_reaches_the_app_and_back():
    app_ws = WsApp()
    app_ws.start()
    try:
        with Stack(real=True) as stack:
            doc = (f'<Response><Stream bidirectional="true" keepCallAlive="true" streamTimeout="4" '
                   f'statusCallbackUrl="{stack.app.url("/stream")}">{app_ws.url}</Stream></Response>')
            stack.app.document("/answer", doc)
            assert _originate(stack, "callfork2").startswith("+OK")
            conn = app_ws.wait_connection(timeout=20)
            conn.wait_for(lambda c: sum(1 for t in c.texts() if '"media"' in t) >= 50, timeout=10)
            start = json.loads(conn.texts()[0])
            assert start["event"] == "start"
            assert start["start"]["mediaFormat"] == {"encoding": "audio/x-l16", "sampleRate": 8000}
            stack.app.wait_event("StartStream", timeout=10)
            stack.app.wait_event("StopStream", timeout=15)   # streamTimeout is a server-side stop
            hangup = stack.app.wait_event("Hangup", timeout=20).form
            assert hangup["HangupCauseCode"] == "4010"
    finally:
        app_ws.stop()
