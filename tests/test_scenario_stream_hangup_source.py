"""The caller hangs up while a blocking stream holds the document (issue 12): a Vobiz `<Stream
keepCallAlive="true">` and an SWML `connect` to `stream:`. The Hangup webhook says Caller / 4000
Normal Hangup, as for any other blocking verb, and not 4010 "End Of XML Instructions" / Vobiz: the
document did not run out, the caller left. On the simulator and (marked `freeswitch`) on a real
FreeSWITCH, where the caller is the A leg of a loopback call and hangs up with NORMAL_CLEARING."""
import json

from harness import Stack, switch_modes
from stream_scenarios import Calls, noise, write_wav
from wsapp import AppServer as WsApp


def _swml(*steps):
    return json.dumps({"version": "1.0.0", "sections": {"main": list(steps)}})


@switch_modes()
def test_caller_hangup_during_a_blocking_stream(tmp_path, real_fs):
    apps = {"keep": WsApp().start(), "connect": WsApp().start()}
    try:
        with Stack(real=real_fs) as stack:
            calls = Calls(stack)
            status = calls.url("/stream-status")
            # nothing after the stream: the only way the document "ends" is the stream ending
            calls.add("callfork9101" if real_fs else "9101",
                      f'<Response><Stream bidirectional="true" keepCallAlive="true" '
                      f'statusCallbackUrl="{status}">{apps["keep"].url}</Stream></Response>')
            calls.add("callfork9102" if real_fs else "9102",
                      _swml("answer", {"connect": {"to": f"stream:{apps['connect'].url}"}}),
                      "application/json")
            audio = None if real_fs else write_wav(tmp_path / "caller.wav", noise(6.0, seed=5))
            hangups = {}
            for name, number in (("keep", "9101"), ("connect", "9102")):
                call = stack.call(to=number, audio=audio, hangup_after=3)   # a real call dials callfork<number>
                # the app has the stream (the caller is talking to it) before the caller leaves
                apps[name].wait_connection(20).wait_for(lambda c: len(c.texts()) >= 3, 10)
                call.wait(30)
                stack.app.wait_event("Hangup", timeout=20, count=len(hangups) + 1)
                hangups[name] = stack.app.events("Hangup")[len(hangups)].form
            for app in apps.values():
                app.connections[0].closed.wait(5)
            stop_streams = stack.app.events("StopStream")
    finally:
        for app in apps.values():
            app.stop()
    for name, h in hangups.items():
        assert (h["HangupSource"], h["HangupCauseCode"], h["HangupCauseName"], h["HangupCause"]) == \
            ("Caller", "4000", "Normal Hangup", "NORMAL_CLEARING"), (name, h)
        assert h["Error"] == "" and h["CallStatus"] == "completed", (name, h)
        assert apps[name].connections[0].close_code == 1000, name     # closed quietly
    assert stop_streams == []                                          # a hangup posts no StopStream
