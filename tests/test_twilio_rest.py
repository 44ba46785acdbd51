"""Twilio's REST API on callfork (callfork/twilio_api.py), driven by the `twilio` package's own Client on the
whole product (simulator + service + the app, real sockets): create with Url and with Twiml, list,
fetch, update (redirect, hang up), streams started and stopped, errors in Twilio's shape, and the
StatusCallback's initiated / answered / completed in order, numbered and signed; originates that
fail end as busy / no-answer; list pages. A callee that rings (the loopback's inline far side, on the
simulator and on a real FreeSWITCH): ringing, then no-answer at the Timeout, or canceled by the API."""
import json

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

import wsapp
from harness import switch_modes
from twilio_support import ACCOUNT, EVENTS, client, signed, status_callbacks, twilio_stack, wait_status
from verbs.twiml import call_uuid


def _pause(seconds: int) -> str:
    response = VoiceResponse()
    response.pause(length=seconds)
    return str(response)


def _answered(stack, sid, timeout=10):
    stack.wait(lambda: call_uuid(sid) in stack.service.calls
               and stack.service.calls[call_uuid(sid)].session.answered, timeout)


def test_create_with_url_posts_initiated_answered_completed_in_order_signed():
    with twilio_stack() as stack:
        say = VoiceResponse()
        say.pause(length=1)
        answer = stack.app.document("/voice", str(say))
        twilio = client(stack)
        call = twilio.calls.create(to="+15551230002", from_="+15551230001", url=answer,
                                   status_callback=stack.app.url("/status"), status_callback_event=EVENTS)
        assert call.sid.startswith("CA") and len(call.sid) == 34 and call.status == "queued"
        assert call.direction == "outbound-api" and call.account_sid == ACCOUNT and call.api_version == "2010-04-01"
        assert call.to == "+15551230002" and call._from == "+15551230001" and call.price is None
        assert call.date_created is not None and call.uri.endswith(f"/Calls/{call.sid}.json")
        forms = wait_status(stack, "/status", call.sid, "completed")
        # the far side (loopback/+15551230002/default: the simulator answers and parks it) answers at
        # once: nothing rings (a callee that rings: below)
        assert [f["CallStatus"] for f in forms] == ["initiated", "in-progress", "completed"]
        assert [f["SequenceNumber"] for f in forms] == ["0", "1", "2"]
        assert all(f["CallSid"] == call.sid and f["AccountSid"] == ACCOUNT and f["Direction"] == "outbound-api"
                   and f["To"] == "+15551230002" and f["From"] == "+15551230001" for f in forms)
        assert forms[-1]["CallDuration"] in ("1", "2") and forms[-1]["ErrorMessage"] == ""
        fetched = signed(stack, stack.app.wait_path("/voice")[0])
        assert fetched["CallSid"] == call.sid and fetched["CallStatus"] == "in-progress"
        done = twilio.calls(call.sid).fetch()
        assert done.status == "completed" and done.end_time is not None and done.duration in ("1", "2")
        assert [c.sid for c in twilio.calls.list(status="completed", to="+15551230002")] == [call.sid]
        assert twilio.calls.list(status="busy") == []
        second = twilio.calls.create(to="+15551230003", from_="+15551230001", twiml=str(say))
        stack.wait(lambda: twilio.calls(second.sid).fetch().status == "completed", 10)
        # one call a page: the package follows next_page_uri, newest first
        assert [c.sid for c in twilio.calls.list(page_size=1)] == [second.sid, call.sid]
        first_page = twilio.calls.page(page_size=1)
        assert first_page.next_page_url and [c.sid for c in first_page] == [second.sid]


def test_inline_twiml_list_redirect_then_hang_up_and_an_ended_call_is_404():
    with twilio_stack() as stack:
        redirected = stack.app.document("/next", _pause(30))
        twilio = client(stack)
        call = twilio.calls.create(to="+15551230002", from_="+15551230001", twiml=_pause(30),
                                   status_callback=stack.app.url("/status"))
        _answered(stack, call.sid)
        assert twilio.calls(call.sid).fetch().status == "in-progress"
        live = twilio.calls.list(status="in-progress")
        assert [c.sid for c in live] == [call.sid] and live[0].start_time is not None
        # redirect: the live call fetches the new document, signed, with its CallSid
        assert twilio.calls(call.sid).update(url=redirected, method="POST").sid == call.sid
        fetch = signed(stack, stack.app.wait_path("/next")[0])
        assert fetch["CallSid"] == call.sid and fetch["Direction"] == "outbound-api"
        # and an inline one; then hang up
        twilio.calls(call.sid).update(twiml=_pause(20))
        ended = twilio.calls(call.sid).update(status="completed")
        assert ended.status == "completed"
        forms = wait_status(stack, "/status", call.sid, "completed")
        assert [f["CallStatus"] for f in forms] == ["completed"] and forms[0]["SequenceNumber"] == "0"
        stack.wait(lambda: (stack.service.store.get_call(call_uuid(call.sid)) or {}).get("end_time"))
        record = stack.service.store.get_call(call_uuid(call.sid))
        assert record["hangup_source"] == "API Request" and record["status"] == "completed"
        with pytest.raises(TwilioRestException) as again:
            twilio.calls(call.sid).update(status="completed")
        assert again.value.status == 404 and again.value.code == 20404
        with pytest.raises(TwilioRestException) as redirect:
            twilio.calls(call.sid).update(url=redirected)
        assert redirect.value.status == 400 and redirect.value.code == 21220
        assert twilio.calls(call.sid).fetch().status == "completed"


def test_streams_start_and_stop_on_a_live_call():
    app = wsapp.AppServer().start()
    try:
        with twilio_stack() as stack:
            twilio = client(stack)
            call = twilio.calls.create(to="+15551230002", from_="+15551230001", twiml=_pause(30))
            _answered(stack, call.sid)
            stream = twilio.calls(call.sid).streams.create(
                url=app.url, name="agent", track="inbound_track", status_callback=stack.app.url("/stream"),
                parameter1_name="tenant", parameter1_value="acme")
            assert stream.sid.startswith("MZ") and stream.name == "agent" and stream.status == "in-progress"
            assert stream.call_sid == call.sid
            conn = app.wait_connection(10)
            conn.wait_for(lambda c: any('"start"' in t for t in c.texts()), 10)
            start = next(json.loads(t) for t in conn.texts() if '"start"' in t)
            assert start["streamSid"] == stream.sid and start["start"]["callSid"] == call.sid
            assert start["start"]["customParameters"] == {"tenant": "acme"}
            stopped = twilio.calls(call.sid).streams("agent").update(status="stopped")
            assert stopped.status == "stopped" and stopped.sid == stream.sid
            stack.app.wait_for(lambda: len(stack.app.wait_path("/stream")) >= 2, 10)
            events = [r.form["StreamEvent"] for r in stack.app.wait_path("/stream")]
            assert events == ["stream-started", "stream-stopped"]
            assert all(r.form["StreamSid"] == stream.sid for r in stack.app.wait_path("/stream"))
            with pytest.raises(TwilioRestException) as gone:
                twilio.calls(call.sid).streams("nosuch").update(status="stopped")
            assert gone.value.status == 404 and gone.value.code == 20404
            twilio.calls(call.sid).update(status="completed")
    finally:
        app.stop()


def test_errors_in_twilios_shape():
    with twilio_stack() as stack:
        with pytest.raises(TwilioRestException) as bad_auth:
            client(stack, token="wrong").calls("CA" + "0" * 32).fetch()
        assert bad_auth.value.status == 401 and bad_auth.value.code == 20003
        with pytest.raises(TwilioRestException) as other_account:
            client(stack, account="AC" + "f" * 32).calls("CA" + "0" * 32).fetch()
        assert other_account.value.status == 401   # its credentials are not ours
        twilio = client(stack)
        with pytest.raises(TwilioRestException) as unknown:
            twilio.calls("CA" + "0" * 32).fetch()
        assert unknown.value.status == 404 and unknown.value.code == 20404
        with pytest.raises(TwilioRestException) as no_to:
            twilio.calls.create(to="", from_="+15551230001", url=stack.app.url("/voice"))
        assert no_to.value.status == 400 and no_to.value.code == 21201
        with pytest.raises(TwilioRestException) as no_url:
            twilio.calls.create(to="+15551230002", from_="+15551230001")
        assert no_url.value.status == 400 and no_url.value.code == 21205
        with pytest.raises(TwilioRestException) as bad_event:
            twilio.calls.create(to="+15551230002", from_="+15551230001", url=stack.app.url("/voice"),
                                status_callback_event=["dialled"])
        assert bad_event.value.status == 400
        raw = requests.get(f"{stack.http_url}/2010-04-01/Accounts/AC{'e' * 32}/Calls.json",
                           auth=(ACCOUNT, "test-token"), timeout=10)
        assert raw.status_code == 404 and raw.json()["code"] == 20404
        assert raw.json()["more_info"] == "https://www.twilio.com/docs/errors/20404"
        other = requests.get(f"{stack.http_url}/2010-04-01/Accounts/{ACCOUNT}/Queues.json",
                             auth=(ACCOUNT, "test-token"), timeout=10)
        assert other.status_code == 404 and other.json()["code"] == 20404
        anonymous = requests.get(f"{stack.http_url}/2010-04-01/Accounts/{ACCOUNT}/Queues.json", timeout=10)
        assert anonymous.status_code == 401 and anonymous.json()["code"] == 20003
        with pytest.raises(TwilioRestException) as bad_method:
            twilio.calls.create(to="+15551230002", from_="+15551230001", url=stack.app.url("/voice"),
                                method="PUT")
        assert bad_method.value.status == 400 and bad_method.value.code == 20422
        assert not stack.service.calls and not stack.app.requests


def test_failed_originates_complete_as_busy_and_no_answer():
    # with the dial string "{to}", `to` is a FreeSWITCH endpoint; `error/<CAUSE>` fails at once
    with twilio_stack(env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": "{to}"}) as stack:
        twilio = client(stack)
        for to, status in (("error/USER_BUSY", "busy"), ("error/NO_ANSWER", "no-answer")):
            call = twilio.calls.create(to=to, from_="+15551230001", url=stack.app.url("/never"),
                                       status_callback=stack.app.url("/status"),
                                       status_callback_event=["initiated", "completed"])
            forms = wait_status(stack, "/status", call.sid, status)
            assert [f["CallStatus"] for f in forms] == ["initiated", status]
            assert [f["SequenceNumber"] for f in forms] == ["0", "1"]
            assert forms[1]["CallDuration"] == "0" and forms[1]["ErrorMessage"].startswith("originate failed")
            assert twilio.calls(call.sid).fetch().status == status
        assert not stack.app.events("Hangup") and not [r for r in stack.app.requests if r.path == "/never"]


@switch_modes()
def test_a_ringing_callee_posts_ringing_then_no_answer(real_fs):
    """The callee rings (ring_ready on the loopback's far side: CHANNEL_PROGRESS on the call's own
    channel) and never answers: ringing, then completed with no-answer at the Timeout."""
    dial = "loopback/m:^:set:callee={to}^ring_ready^sleep:30000/default/inline"
    with twilio_stack(real=real_fs, env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": dial}) as stack:
        twilio = client(stack)
        call = twilio.calls.create(to="+15551230002", from_="+15551230001", url=stack.app.url("/never"),
                                   timeout=5, status_callback=stack.app.url("/status"),
                                   status_callback_event=EVENTS)
        stack.app.wait_for(lambda: len(status_callbacks(stack, "/status", call.sid)) >= 2, 10)
        assert twilio.calls(call.sid).fetch().status == "ringing"
        forms = wait_status(stack, "/status", call.sid, "no-answer", timeout=30)
        assert [f["CallStatus"] for f in forms] == ["initiated", "ringing", "no-answer"]
        assert [f["SequenceNumber"] for f in forms] == ["0", "1", "2"]


@switch_modes()
def test_canceling_a_ringing_call(real_fs):
    """Status=canceled while the callee rings: the originate is ended, `completed` says canceled."""
    dial = "loopback/m:^:set:callee={to}^ring_ready^sleep:30000/default/inline"
    with twilio_stack(real=real_fs, env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": dial}) as stack:
        twilio = client(stack)
        call = twilio.calls.create(to="+15551230002", from_="+15551230001", url=stack.app.url("/never"),
                                   timeout=30, status_callback=stack.app.url("/status"),
                                   status_callback_event=["ringing", "completed"])
        wait_status(stack, "/status", call.sid, "ringing")
        assert twilio.calls(call.sid).update(status="canceled").status == "canceled"
        forms = wait_status(stack, "/status", call.sid, "canceled")
        assert [f["CallStatus"] for f in forms] == ["ringing", "canceled"]
        assert stack.service.control.api(f"uuid_exists {call_uuid(call.sid)}").strip() == "false"
        assert twilio.calls(call.sid).fetch().status == "canceled"
        assert not [r for r in stack.app.requests if r.path == "/never"]
