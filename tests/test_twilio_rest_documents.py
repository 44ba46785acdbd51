"""The documents a call placed through callfork's Twilio REST API runs (callfork/twilio_api.py), driven
by the `twilio` package's Client: `Method=GET` fetches the Url with GET (the call's parameters in the
query, signed over the full URL); an update with `Twiml` runs that document on the live call (here a
<Redirect> to the app, seen arriving); an update with `Url` + `Method=GET` fetches it with GET; and
an error body has Twilio's four fields. On the simulator (whose loopback far end answers at once)."""
import requests
from twilio.twiml.voice_response import VoiceResponse

from twilio_support import ACCOUNT, client, signed, twilio_stack, wait_status
from verbs.twiml import call_uuid


def _pause(seconds: int) -> str:
    response = VoiceResponse()
    response.pause(length=seconds)
    return str(response)


def test_create_with_method_get_then_update_with_inline_twiml_and_with_a_get_url():
    with twilio_stack() as stack:
        twilio = client(stack)
        stack.app.document("/voice", _pause(30))
        stack.app.document("/inline-ran", _pause(30))
        stack.app.document("/got", '<Response><Hangup/></Response>')
        call = twilio.calls.create(to="+15551230002", from_="+15551230001", url=stack.app.url("/voice?step=1"),
                                   method="GET", status_callback=stack.app.url("/status"))
        (voice,) = stack.app.wait_path("/voice", timeout=15)
        assert voice.method == "GET"
        args = signed(stack, voice)
        assert args["step"] == "1" and args["CallSid"] == call.sid and args["CallStatus"] == "in-progress"
        stack.wait(lambda: call_uuid(call.sid) in stack.service.calls
                   and stack.service.calls[call_uuid(call.sid)].session.answered, 10)

        inline = VoiceResponse()
        inline.redirect(stack.app.url("/inline-ran"), method="POST")
        assert twilio.calls(call.sid).update(twiml=str(inline)).sid == call.sid
        (ran,) = stack.app.wait_path("/inline-ran", timeout=15)
        assert ran.method == "POST" and signed(stack, ran)["CallSid"] == call.sid

        twilio.calls(call.sid).update(url=stack.app.url("/got"), method="GET")
        (got,) = stack.app.wait_path("/got", timeout=15)
        assert got.method == "GET" and signed(stack, got)["CallSid"] == call.sid
        (done,) = [f for f in wait_status(stack, "/status", call.sid, "completed")]
        assert done["ErrorMessage"] == "" and twilio.calls(call.sid).fetch().status == "completed"


def test_an_error_body_has_code_message_more_info_and_status():
    with twilio_stack() as stack:
        raw = requests.post(f"{stack.http_url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json",
                            data={"From": "+15551230001", "Url": stack.app.url("/voice")},
                            auth=(ACCOUNT, "test-token"), timeout=10)
        assert raw.status_code == 400 and raw.headers["Content-Type"].startswith("application/json")
        body = raw.json()
        assert set(body) == {"code", "message", "more_info", "status"}
        assert body["code"] == 21201 and body["status"] == 400 and body["message"]
        assert body["more_info"] == "https://www.twilio.com/docs/errors/21201"


def test_a_call_placed_through_the_vobiz_rest_api_with_api_twilio_is_a_twilio_call():
    """`POST .../Call/` with `api=twilio` (issue 14: the app's API is also a REST-originated call's
    parameter): its answer is TwiML (a <Say>, which Vobiz XML does not have), its requests carry
    Twilio's parameters and signature only, its hangup_url is its StatusCallback (`completed`), and
    no Vobiz Hangup webhook is sent. Any other `api` is refused."""
    with twilio_stack() as stack:
        answer = VoiceResponse()
        answer.say("Hello")
        stack.app.document("/voice", str(answer))
        placed = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), timeout=10, json={
            "from": "+15551230001", "to": "+15551230002", "answer_url": stack.app.url("/voice"),
            "hangup_url": stack.app.url("/status"), "api": "twilio"})
        assert placed.status_code == 201, placed.text
        (voice,) = stack.app.wait_path("/voice", timeout=15)
        form = signed(stack, voice)
        assert form["AccountSid"] == ACCOUNT and form["Direction"] == "outbound-api"
        assert form["To"] == "+15551230002" and form["CallStatus"] == "in-progress"
        assert "x-vobiz-signature" not in voice.headers and "CallUUID" not in form
        (status,) = stack.app.wait_path("/status", timeout=20)
        done = signed(stack, status)
        assert done["CallSid"] == form["CallSid"] and done["CallStatus"] == "completed"
        assert done["ErrorMessage"] == ""          # the <Say> ran: the answer was read as TwiML
        assert not stack.app.events("Hangup")
        refused = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), timeout=10, json={
            "from": "+15551230001", "to": "+15551230002", "answer_url": stack.app.url("/voice"), "api": "plivo"})
        assert refused.status_code == 400 and "api" in refused.json()["error"]
