"""Issue 14's "done when", in one call: a Twilio voice app (TwiML from the `twilio` package's
VoiceResponse: <Say>, <Gather>, then <Connect><Stream> with a <Parameter>) and a pipecat bot with
TwilioFrameSerializer, unchanged, against callfork. The caller hears the Say and the bot's reply; the
bot hears the caller (its deserialized audio holds the caller's tone); the bot's end hangs the call
up through callfork's Twilio REST API (base_url); every request the app got is Twilio-signed (the
package's RequestValidator) and the StatusCallback's `completed` closes the call. On the simulator
and on a real FreeSWITCH."""
import base64
import json

import numpy as np
from twilio.twiml.voice_response import Connect, VoiceResponse

import wsapp
from harness import switch_modes
from pipecat_support import Driver, needs_pipecat
from stream_scenarios import rms, tone, windows_with, write_wav
from twilio_support import TOKEN, signed, twilio_stack, wait_status
from verbs.twiml import call_uuid
from waiting import wait_until

CALLER_TONE = 300      # Hz: what the caller says once the bot is on
BOT_TONE = 1000        # Hz: the bot's reply


def _caller_audio(path):
    """Silence while the app greets and asks, then the caller's tone for 10 s."""
    audio = np.concatenate([np.zeros(6 * 8000, dtype=np.int16), tone(CALLER_TONE, 10.0)])
    return write_wav(path, audio)


@needs_pipecat
@switch_modes()
def test_a_twilio_app_and_a_pipecat_bot_run_unchanged(real_fs, tmp_path):
    bot_ws = wsapp.AppServer().start()
    driver = Driver()
    try:
        stack = twilio_stack(real=real_fs)
        stack.app.start()                        # its port goes into the config
        prefix = "callfork" if real_fs else ""   # the real switch routes callfork<N> to callfork
        stack.config_text = (f'[[numbers]]\nnumber = "{prefix}2000"\napi = "twilio"\n'
                             f'answer_url = "{stack.app.url("/voice")}"\n'
                             f'hangup_url = "{stack.app.url("/status")}"\n')
        with stack:
            welcome = VoiceResponse()
            welcome.say("Welcome to the clinic.")
            gather = welcome.gather(num_digits=1, action="/menu", timeout=8)
            gather.say("Press one for the assistant.")
            welcome.say("We did not get your choice.")
            stack.app.document("/voice", str(welcome), "text/xml")
            agent = VoiceResponse()
            connect = Connect()
            connect.stream(url=bot_ws.url).parameter(name="lang", value="en")
            agent.append(connect)
            agent.say("unreachable: the bot hangs up")
            stack.app.document("/menu", str(agent), "text/xml")

            call = stack.call(to="2000", audio=str(_caller_audio(tmp_path / "caller.wav")),
                              dtmf=[("1", 4.5)], hangup_after=60, keep_heard=True)

            # the bot, as pipecat runs it: detect the provider, read the start, then frames
            conn = bot_ws.wait_connection(20)
            conn.wait_for(lambda c: len(c.texts()) >= 2, 10)
            detected = driver(op="detect", frames=conn.texts()[:2])
            assert detected["transport"] == "twilio"
            data = detected["call_data"]
            start = next(json.loads(t) for t in conn.texts() if '"start"' in t)["start"]
            assert start["customParameters"] == {"lang": "en"}
            driver(op="open", provider="twilio", stream_id=data["stream_id"], call_id=data["call_id"],
                   pipeline_rate=16000)

            def bot_heard_the_caller():   # 1 s of the caller's tone among the frames so far
                parsed = driver(op="deserialize", messages=conn.texts()[2:])
                if not parsed.get("sample_rate"):   # no media frame yet
                    return False
                audio = np.frombuffer(base64.b64decode(parsed["audio"]), dtype=np.int16)
                return windows_with(audio, CALLER_TONE, rate=parsed["sample_rate"]) >= 10
            wait_until(bot_heard_the_caller, 20, "the bot hears the caller's tone", interval=0.5)

            reply = tone(BOT_TONE, 1.5, rate=16000)
            for text in driver(op="serialize", audio=base64.b64encode(reply.tobytes()).decode(),
                               sample_rate=16000)["messages"]:
                conn.send_text(text)
            conn.send_text(json.dumps({"event": "mark", "streamSid": data["stream_id"], "mark": {"name": "said"}}))
            # callfork echoes the mark once the caller has heard everything sent before it
            conn.wait_for(lambda c: any(json.loads(m).get("event") == "mark" for m in c.texts()), 10)

            hung = driver(op="hangup", stream_id=data["stream_id"], call_id=data["call_id"],
                          account_sid=start["accountSid"], auth_token=TOKEN, base_url=stack.http_url)
            assert any("Successfully terminated Twilio call" in line for line in hung["log"]), hung

            forms = wait_status(stack, "/status", data["call_id"], "completed")
            assert [f["CallStatus"] for f in forms] == ["completed"]
            assert int(forms[0]["CallDuration"]) >= 5
            uuid = call_uuid(data["call_id"])
            stack.wait(lambda: (stack.service.store.get_call(uuid) or {}).get("end_time"), 10)
            assert stack.service.store.get_call(uuid)["hangup_source"] == "API Request"
            voice = signed(stack, stack.app.wait_path("/voice")[0])
            menu = signed(stack, stack.app.wait_path("/menu")[0])
            assert voice["CallSid"] == menu["CallSid"] == data["call_id"] == start["callSid"]
            assert menu["Digits"] == "1"
            heard = call.heard()

        # the caller heard the greeting (speech before the bot) and the bot's reply
        bot_at = 8000 * 4
        assert rms(heard[:bot_at]) > 300, "no speech heard before the bot"
        assert windows_with(heard, BOT_TONE) >= 8
    finally:
        driver.close()
        bot_ws.stop()
