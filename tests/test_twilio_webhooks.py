"""A Twilio app's calls, on the call side that needs no TwiML: every request callfork makes for them
carries Twilio's parameters and an X-Twilio-Signature that the `twilio` package's own
RequestValidator accepts; its StatusCallback gets `completed` (with the error when the call failed)
instead of the Vobiz Hangup webhook; Vobiz apps next to it are unchanged; Call SIDs map to UUIDs and
back; the outbox keeps who signs each webhook, also in a database of an older callfork."""
import sqlite3
import uuid

import pytest
from twilio.request_validator import RequestValidator

from harness import Stack
from http_receiver import Reply
from webhooks import twilio_headers, twilio_signature
from webhooks.outbox_table import OutboxTable
from verbs.twiml import call_sid, call_uuid, e164, stream_sid
from verbs.twiml.status_callback import StatusCallback, final_status, parse_events

TOKEN = "test-token"


def _valid(req, url) -> bool:
    params = req.form if req.method == "POST" else {}
    full = url if req.method == "POST" else f"{url}?{req.query}"
    return RequestValidator(TOKEN).validate(full, params, req.headers.get("x-twilio-signature", ""))


# -- signatures ------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [
    {"CallSid": "CA" + "0" * 32, "Digits": "1234#", "From": "+15551230000"},
    {"Text": "naïve café ☎", "Empty": "", "A": "1"},
    {},
])
def test_twilio_validator_accepts_our_post_signature(params):
    url = "https://app.example.com:8443/voice?x=1&y=two"
    headers = twilio_headers(url, params, TOKEN, method="POST", idempotency_key="k1")
    assert RequestValidator(TOKEN).validate(url, params, headers["X-Twilio-Signature"])
    assert headers["I-Twilio-Idempotency-Token"] == "k1"
    assert not RequestValidator("other-token").validate(url, params, headers["X-Twilio-Signature"])
    if params:   # a changed parameter is caught
        changed = dict(params, **{next(iter(params)): "tampered"})
        assert not RequestValidator(TOKEN).validate(url, changed, headers["X-Twilio-Signature"])


def test_twilio_validator_accepts_our_get_signature_over_the_full_url():
    url = "http://127.0.0.1:9/status"
    params = {"CallStatus": "completed", "CallSid": "CA" + "1" * 32}
    signature = twilio_headers(url, params, TOKEN, method="GET")["X-Twilio-Signature"]
    from webhooks.signing import with_query
    assert RequestValidator(TOKEN).validate(with_query(url, params), {}, signature)
    assert not RequestValidator(TOKEN).validate(url, params, signature)   # the URL alone is not what was signed


def test_signature_needs_a_token():
    with pytest.raises(ValueError):
        twilio_headers("http://x/", {}, "")
    assert twilio_signature("http://x/", {"a": "1"}, TOKEN) != twilio_signature("http://x/", {"a": "2"}, TOKEN)


# -- identifiers and parameters ----------------------------------------------------------------------
def test_call_sids_map_to_uuids_and_back():
    u = str(uuid.uuid4())
    sid = call_sid(u)
    assert sid.startswith("CA") and len(sid) == 34 and sid[2:] == u.replace("-", "")
    assert call_uuid(sid) == u
    assert call_uuid(u) == u                      # the UUID itself names the call too
    assert call_uuid(stream_sid(u)) is None       # an MZ sid is no call
    for bad in ("", "CA123", "CA" + "g" * 32, "x" * 36, None, "CA" + "0" * 33):
        assert call_uuid(bad) is None
    with pytest.raises(ValueError):
        call_sid("not-a-uuid")


def test_numbers_in_e164():
    assert e164("15551230000") == "+15551230000"
    assert e164("+919876543210") == "+919876543210"
    assert e164("1000") == "1000"                 # an extension stays as FreeSWITCH gave it
    assert e164("alice") == "alice"
    assert e164("") == ""


def test_status_callback_events_and_final_status():
    assert parse_events(None) == ("completed",)
    assert parse_events(["ringing", "answered"]) == ("ringing", "answered", "completed")
    assert parse_events("initiated ringing") == ("initiated", "ringing", "completed")
    with pytest.raises(ValueError, match="'rang'"):
        parse_events(["rang"])
    assert final_status(True, 4000) == "completed"
    assert [final_status(False, c) for c in (3010, 3000, 6010, 1000, 7011)] == \
        ["busy", "no-answer", "no-answer", "canceled", "failed"]
    sent = []
    cb = StatusCallback("http://x/s", "post", ("answered", "completed"))
    assert not cb.send(lambda *a: sent.append(a), {"CallSid": "CA1"}, "ringing")   # not asked for
    assert cb.send(lambda *a: sent.append(a), {"CallSid": "CA1"}, "answered")
    assert cb.send(lambda *a: sent.append(a), {"CallSid": "CA1"}, "completed", CallStatus="completed")
    assert [(s[1], s[2]["CallStatus"], s[2]["SequenceNumber"]) for s in sent] == \
        [("POST", "in-progress", "0"), ("POST", "completed", "1")]
    assert not StatusCallback("", "POST", ("completed",)).wants("completed")   # no URL, nothing sent


# -- a Twilio number's calls, end to end on the simulator ------------------------------------------
def _twilio_number(stack, number, answer_path, status_path):
    stack.app.start()   # its port goes into the config
    return (f'[[numbers]]\nnumber = "{number}"\napi = "twilio"\n'
            f'answer_url = "{stack.app.url(answer_path)}"\nhangup_url = "{stack.app.url(status_path)}"\n')


def test_a_twilio_apps_requests_carry_twilio_params_and_signature_and_its_status_callback_says_why_it_failed():
    stack = Stack()
    stack.config_text = _twilio_number(stack, "2000", "/voice", "/status")
    with stack:
        stack.app.document("/voice", lambda req: Reply(500, b"boom", "text/plain"))
        call = stack.call(to="2000", from_="15551230000")
        summary = call.wait(20)
        voice = stack.app.wait_path("/voice")[0]
        status = stack.app.wait_path("/status")[0]
    u = summary["uuid"]
    form = voice.form
    assert form["CallSid"] == call_sid(u) and form["AccountSid"] == stack.config.server.auth_id
    assert form["To"] == form["Called"] == "2000"
    assert form["From"] == form["Caller"] == "+15551230000"
    assert form["Direction"] == "inbound" and form["ApiVersion"] == "2010-04-01"
    assert form["CallStatus"] == "ringing"
    assert "CallUUID" not in form and "Event" not in form          # nothing of Vobiz's
    assert not any(h.startswith("x-vobiz-signature") for h in voice.headers)
    assert _valid(voice, stack.app.url("/voice"))
    s = status.form
    assert s["CallSid"] == call_sid(u) and s["CallStatus"] == "failed"
    assert s["CallDuration"] == "0" and s["SequenceNumber"] == "0"
    assert s["CallbackSource"] == "call-progress-events" and s["Timestamp"]
    assert "answered HTTP 500" in s["ErrorMessage"] and stack.app.url("/voice") in s["ErrorMessage"]
    assert status.headers.get("i-twilio-idempotency-token")
    assert _valid(status, stack.app.url("/status"))
    assert not stack.app.events("Hangup")                          # no Vobiz Hangup webhook


def test_a_twilio_number_and_a_vobiz_number_side_by_side_keep_their_own_forms():
    stack = Stack()
    stack.config_text = _twilio_number(stack, "2000", "/voice", "/status")
    with stack:
        stack.app.document("/voice", lambda req: Reply(404, b"", "text/plain"))
        stack.app.document("/answer", "<Response><Speak>hello</Speak></Response>")
        stack.call(to="2000").wait(20)
        stack.call(to="1000").wait(20)
        vobiz_answer = stack.app.wait_path("/answer")[0]
        hangup = stack.app.wait_event("Hangup")
        stack.app.wait_path("/status")
    assert vobiz_answer.form["Event"] == "StartApp" and "CallSid" not in vobiz_answer.form
    assert vobiz_answer.headers.get("x-vobiz-signature") and "x-twilio-signature" not in vobiz_answer.headers
    assert hangup.form["HangupCauseCode"] == "4010" and "x-twilio-signature" not in hangup.headers


def test_an_older_outbox_database_gets_the_signer_column_and_its_rows_stay_vobiz(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    OutboxTable(str(path)).close()
    with sqlite3.connect(path) as db:   # as a callfork without the column left it
        db.execute("ALTER TABLE outbox DROP COLUMN signer")
        db.execute("INSERT INTO outbox (order_key, url, method, encoding, body, idempotency_key, status, "
                   "max_attempts, next_attempt_at, created_at, updated_at) "
                   "VALUES ('c', 'http://x/', 'POST', 'form', '[]', 'k', 'pending', 5, 0, 0, 0)")
    table = OutboxTable(str(path))
    try:
        rows = table._db.query("SELECT signer FROM outbox")
        assert [r["signer"] for r in rows] == ["vobiz"]
    finally:
        table.close()
