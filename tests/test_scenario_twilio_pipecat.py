"""pipecat's TwilioFrameSerializer hangs a call up through callfork's Twilio REST API (issue 14, item 4).

A Twilio call placed with the `twilio` package's Client (inline TwiML that pauses) gets a Media
Stream started through Streams.json; the app's WebSocket reads the stream's `start` (streamSid,
callSid), and pipecat's real serializer, built with those SIDs, the AccountSid, the auth token and
`base_url` = callfork, serializes an EndFrame as pipecat's transport does when the pipeline ends: its
auto hang-up POSTs Status=completed. The call really ends (the switch has no such channel any more,
the record says the API hung it up, the StatusCallback says completed), and a second hang-up of the
ended call gets 404 with code 20404, which pipecat takes as "already ended". And a caller of a Twilio
number whose TwiML is <Connect><Stream> to the bot is hung up by the bot's end the same way. On the
simulator and a real FreeSWITCH (whose 9999 answers and parks: the REST call's far end)."""
import json

from twilio.twiml.voice_response import Connect, VoiceResponse

import wsapp
from harness import switch_modes
from pipecat_support import Driver, needs_pipecat
from twilio_support import ACCOUNT, TOKEN, client, twilio_stack, wait_status
from verbs.twiml import call_uuid


@needs_pipecat
@switch_modes()
def test_pipecat_auto_hang_up_ends_the_call_through_the_rest_api(real_fs):
    app = wsapp.AppServer().start()
    driver = Driver()
    try:
        with twilio_stack(real=real_fs) as stack:
            twilio = client(stack)
            pause = VoiceResponse()
            pause.pause(length=60)
            call = twilio.calls.create(to="9999", from_="+15551230001", twiml=str(pause),
                                       status_callback=stack.app.url("/status"),
                                       status_callback_event=["answered", "completed"])
            uuid = call_uuid(call.sid)
            stack.wait(lambda: uuid in stack.service.calls and stack.service.calls[uuid].session.answered, 15)
            twilio.calls(call.sid).streams.create(url=app.url)
            conn = app.wait_connection(10)
            conn.wait_for(lambda c: any('"start"' in t for t in c.texts()), 10)
            start = next(json.loads(t) for t in conn.texts() if '"start"' in t)
            assert start["start"]["callSid"] == call.sid and start["start"]["accountSid"] == ACCOUNT

            hung = driver(op="hangup", stream_id=start["streamSid"], call_id=start["start"]["callSid"],
                          account_sid=ACCOUNT, auth_token=TOKEN, base_url=stack.http_url)
            assert any(f"Successfully terminated Twilio call {call.sid}" in line for line in hung["log"]), hung
            forms = wait_status(stack, "/status", call.sid, "completed")
            assert [f["CallStatus"] for f in forms] == ["in-progress", "completed"]
            assert [f["SequenceNumber"] for f in forms] == ["0", "1"]
            stack.wait(lambda: (stack.service.store.get_call(uuid) or {}).get("end_time"), 10)
            record = stack.service.store.get_call(uuid)
            assert record["status"] == "completed" and record["hangup_source"] == "API Request"
            assert stack.service.control.api(f"uuid_exists {uuid}").strip() == "false"
            assert twilio.calls(call.sid).fetch().status == "completed"

            again = driver(op="hangup", stream_id=start["streamSid"], call_id=call.sid,
                           account_sid=ACCOUNT, auth_token=TOKEN, base_url=stack.http_url)
            assert any(f"Twilio call {call.sid} was already terminated" in line for line in again["log"]), again
            assert not any("Failed" in line for line in again["log"]), again
    finally:
        driver.close()
        app.stop()


@needs_pipecat
@switch_modes()
def test_a_connect_stream_bot_hangs_its_caller_up_through_the_rest_api(real_fs):
    """An incoming call to a Twilio number whose TwiML is <Connect><Stream> to the bot: the bot reads
    the stream's `start` as pipecat does, and its pipeline's end hangs the caller up (the verb after
    <Connect> never runs)."""
    app = wsapp.AppServer().start()
    driver = Driver()
    prefix = "callfork" if real_fs else ""       # the real switch routes callfork<N> to callfork
    try:
        stack = twilio_stack(real=real_fs)
        stack.app.start()                        # its port goes into the config
        stack.config_text = (f'[[numbers]]\nnumber = "{prefix}2000"\napi = "twilio"\n'
                             f'answer_url = "{stack.app.url("/voice")}"\nhangup_url = "{stack.app.url("/status")}"\n')
        with stack:
            bot = VoiceResponse()
            connect = Connect()
            connect.stream(url=app.url)
            bot.append(connect)
            bot.redirect(stack.app.url("/after"))
            stack.app.document("/voice", str(bot))
            stack.call(to="2000", hangup_after=60)   # (RealCall dials callfork<to>)
            conn = app.wait_connection(15)
            conn.wait_for(lambda c: any('"start"' in t for t in c.texts()), 10)
            start = next(json.loads(t) for t in conn.texts() if '"start"' in t)
            detected = driver(op="detect", frames=conn.texts()[:2])
            assert detected["transport"] == "twilio"
            assert detected["call_data"]["call_id"] == start["start"]["callSid"]

            hung = driver(op="hangup", stream_id=detected["call_data"]["stream_id"],
                          call_id=detected["call_data"]["call_id"], account_sid=start["start"]["accountSid"],
                          auth_token=TOKEN, base_url=stack.http_url)
            assert any("Successfully terminated Twilio call" in line for line in hung["log"]), hung
            (status,) = stack.app.wait_path("/status", timeout=15)
            assert status.form["CallStatus"] == "completed" and status.form["CallSid"] == start["start"]["callSid"]
            uuid = call_uuid(status.form["CallSid"])
            stack.wait(lambda: (stack.service.store.get_call(uuid) or {}).get("end_time"), 10)
            assert stack.service.store.get_call(uuid)["hangup_source"] == "API Request"
            assert stack.service.control.api(f"uuid_exists {uuid}").strip() == "false"
            conn.closed.wait(5)
            assert conn.closed.is_set()
            assert not [r for r in stack.app.requests if r.path == "/after"]
    finally:
        driver.close()
        app.stop()
