"""The Vobiz call loop end to end (issue "Vobiz XML engine"): the answer request and its signatures,
fallback, lazy answer (reject / busy / PreAnswer / leading Wait), end of document, Redirect, every
error code of a document that cannot be fetched or parsed, adversarial answers, and documents built
by the vobiz and plivo SDKs. All calls of this module run at once on one Stack (the simulator, the
service and the user's app on real sockets)."""
import base64
import hashlib
import hmac
import re
from datetime import datetime

from plivo import plivoxml as px
import pytest
import vobiz.xml as vx

from harness import Stack
from http_receiver import Reply
from vobiz_scenarios import HANGUP_FIELDS, Scenarios, refused_url
from vobiz.utils import validate_signature

CLOSED = refused_url()      # nothing listens there: connection refused


def _documented_v3(url: str, nonce: str, token: str) -> str:
    """X-Vobiz-Signature-V3 from first principles (https://docs.vobiz.ai/concepts/validating-callbacks);
    the SDK's V3 validator checks Plivo's other form (tests/test_service_webhooks.py)."""
    digest = hmac.new(token.encode(), f"{url}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
NUM_UNREACHABLE, NUM_FALLBACK_DOWN, NUM_FALLBACK_5XX, NUM_BOTH_DOWN = "6901", "6902", "6903", "6904"
NUM_FALLBACK_INVALID, NUM_GET = "6905", "6906"


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Response><Speak>&lol3;</Speak></Response>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Response><Speak>&xxe;</Speak></Response>"""
DEEP = "<Response>" + "<Speak>" * 200 + "x" + "</Speak>" * 200 + "</Response>"


def _sdk_vobiz():
    r = vx.ResponseElement()
    r.add(vx.SpeakElement("Hi there", voice="MAN", language="en-GB", loop=1))
    r.add(vx.WaitElement(length=1))
    r.add(vx.DTMFElement("12", async_=False))
    r.add(vx.HangupElement())
    return r.to_string()


def _sdk_plivo():
    r = px.ResponseElement()
    r.add(px.SpeakElement("Hello", voice="WOMAN", language="en-US"))
    r.add(px.WaitElement(length=1))
    r.add(px.HangupElement(reason="rejected"))
    return r.to_string()


def _wav():
    import io
    import numpy as np
    import soundfile
    buf = io.BytesIO()
    t = np.arange(4000) / 8000
    soundfile.write(buf, (8000 * np.sin(2 * np.pi * 440 * t)).astype("int16"), 8000, format="WAV")
    return buf.getvalue()


SDK_VOBIZ = _sdk_vobiz()
SDK_PLIVO = _sdk_plivo()

DECORATED = """<?xml version="1.0" encoding="UTF-8"?>
<!-- the app's comment -->
<Response>

    <!-- speak something -->
    <Speak voice="WOMAN"><![CDATA[Hi & bye]]></Speak>
    <Redirect method="POST">
        {app}/next
    </Redirect>
</Response>
"""


def _scenarios(s: Scenarios):
    s.add("speak", "<Response><Speak>Hi</Speak></Response>", caller_name="Alice")
    s.add("xml_hangup", "<Response><Speak>Hi</Speak><Hangup/></Response>")
    s.add("reject", "<Response><Hangup/><Speak>never</Speak></Response>")
    s.add("busy", '<Response><Hangup reason="busy"/></Response>')
    s.add("preanswer", "<Response><PreAnswer><Speak>Early</Speak><Wait length=\"1\"/></PreAnswer>"
                       "<Speak>Now</Speak></Response>")
    s.add("preanswer_play", "<Response><PreAnswer><Play>{app}/a.wav</Play></PreAnswer><Hangup/></Response>")
    s.serve("preanswer_play", "/a.wav", _wav(), "audio/wav")
    s.add("redirect_loop", "<Response><Redirect>{app}/again</Redirect></Response>")
    s.serve("redirect_loop", "/again", "<Response><Redirect>{app}/again</Redirect></Response>"
            .replace("{app}", s.url("redirect_loop", "")))
    s.add("wait_first", '<Response><Wait length="2"/><Speak>Hi</Speak></Response>')
    s.add("empty", "<Response/>")
    s.add("invalid", "<Response>\n  <Speak>Hi</Speak>\n  <Play>\n</Response>")
    s.add("bad_attr", '<Response><Speak loop="many">Hi</Speak></Response>')
    base = s.add("redirect_get", '<Response><Redirect method="GET">{app}/next?x=1</Redirect>'
                                 "<Speak>dead code</Speak></Response>")
    s.serve("redirect_get", "/next", "<Response><Speak>Next</Speak></Response>")
    s.add("redirect_post", "<Response><Speak>A</Speak><Redirect>{app}/next</Redirect></Response>")
    s.serve("redirect_post", "/next", "<Response><Speak>B</Speak><Hangup/></Response>")
    s.add("redirect_invalid", "<Response><Redirect>{app}/next</Redirect></Response>")
    s.serve("redirect_invalid", "/next", "<Response><Bogus/></Response>")
    s.add("redirect_unreachable", f"<Response><Redirect>{CLOSED}/next</Redirect></Response>")
    s.add("redirect_500", "<Response><Redirect>{app}/next</Redirect></Response>")
    s.serve("redirect_500", "/next", "oops", "text/plain", status=500)
    s.add("action_invalid", '<Response><Gather action="{app}/menu" numDigits="1" executionTimeout="5">'
                            "<Speak>Press</Speak></Gather></Response>", react=[("speak", "Press", "5", 0.1)])
    s.serve("action_invalid", "/menu", "<Response><Speak>unclosed</Response>")
    s.add("action_unreachable", f'<Response><Gather action="{CLOSED}/menu" numDigits="1" '
                                'executionTimeout="5"><Speak>Press</Speak></Gather></Response>',
          react=[("speak", "Press", "5", 0.1)])
    s.add("unreachable", None, number=NUM_UNREACHABLE)
    s.add("fallback_down", "<Response><Speak>From fallback</Speak></Response>", number=NUM_FALLBACK_DOWN)
    s.add("fallback_5xx", "<Response><Speak>From fallback</Speak></Response>", number=NUM_FALLBACK_5XX)
    s.add("both_down", None, number=NUM_BOTH_DOWN)
    s.add("answer_get", None, number=NUM_GET)
    s.add("fallback_invalid", "<Response><Speak>From fallback</Speak></Response>", number=NUM_FALLBACK_INVALID)
    # a slow app: the caller gives up while the answer is fetched; an app slower than the read timeout
    # (the app's handler makes the caller hang up the moment the request arrives, then answers late)
    s.add("hangup_while_fetching", lambda req: (s.hang_up(req), Reply(
        200, b"<Response><Speak>late</Speak></Response>", "application/xml", delay=0.8))[1])
    s.add("slow_answer", Reply(200, b"<Response><Speak>late</Speak></Response>", "application/xml", delay=3.5))
    s.add("hangup_during_redirect", "<Response><Speak>Hi</Speak><Redirect>{app}/slow</Redirect></Response>")
    s.serve("hangup_during_redirect", "/slow", lambda req: (s.hang_up(req), Reply(
        200, b"<Response><Bad", "application/xml", delay=0.8))[1])
    s.add("latin1", '<?xml version="1.0" encoding="ISO-8859-1"?>\n<Response><Speak>Caf\xe9</Speak></Response>'
          .encode("latin-1"))
    # adversarial answers
    s.add("billion_laughs", BILLION_LAUGHS)
    s.add("external_entity", EXTERNAL_ENTITY)
    s.add("too_large", Reply(200, b"", "application/xml", stream_bytes=10 * 1024 * 1024, declared_length=True))
    s.add("too_large_chunked", Reply(200, b"", "application/xml", stream_bytes=10 * 1024 * 1024))
    s.add("binary", Reply(200, bytes(range(256)) * 8, "application/octet-stream"))
    s.add("wrong_root", "<Document><Speak>Hi</Speak></Document>")
    s.add("deep", DEEP)
    s.add("html", Reply(200, b"<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>", "text/html"))
    # SDK-built and decorated documents
    s.add("sdk_vobiz", SDK_VOBIZ)
    s.add("sdk_plivo", SDK_PLIVO)
    s.add("decorated", DECORATED)
    s.serve("decorated", "/next", "<Response><Speak>Done</Speak></Response>")
    return base


def _config():
    fallback = "/fallback"
    return (f'[[numbers]]\nnumber = "{NUM_UNREACHABLE}"\nanswer_url = "{CLOSED}/answer"\n'
            f'hangup_url = "{{hangup}}"\n'
            f'[[numbers]]\nnumber = "{NUM_FALLBACK_DOWN}"\nanswer_url = "{CLOSED}/answer"\n'
            f'hangup_url = "{{hangup}}"\nfallback_url = "{{app}}{fallback}"\nfallback_method = "GET"\n'
            f'[[numbers]]\nnumber = "{NUM_FALLBACK_5XX}"\nanswer_url = "{{app}}/error500"\n'
            f'hangup_url = "{{hangup}}"\nfallback_url = "{{app}}{fallback}"\n'
            f'[[numbers]]\nnumber = "{NUM_BOTH_DOWN}"\nanswer_url = "{CLOSED}/answer"\n'
            f'hangup_url = "{{hangup}}"\nfallback_url = "{CLOSED}/fallback"\n'
            f'[[numbers]]\nnumber = "{NUM_GET}"\nanswer_url = "{{app}}/answer-get?app=1"\n'
            f'answer_method = "GET"\nhangup_url = "{{hangup}}"\nhangup_method = "GET"\n'
            f'[[numbers]]\nnumber = "{NUM_FALLBACK_INVALID}"\nanswer_url = "{{app}}/badxml"\n'
            f'hangup_url = "{{hangup}}"\nfallback_url = "{{app}}{fallback}"\n')


@pytest.fixture(scope="module")
def s():
    # the app's port is only known once it runs: start it first, then build the config around it
    stack = Stack(env={"CALLFORK_WEBHOOKS_READ_TIMEOUT_S": "2"})
    base = stack.app.start().url("").rstrip("/")
    stack.config_text = _config().replace("{app}", base).replace("{hangup}", base + "/hangup")
    with stack:
        scen = Scenarios(stack)
        _scenarios(scen)
        stack.app.document("/error500", "boom", "text/plain", status=500)
        stack.app.document("/badxml", "<Response><Speak>unclosed</Response>")
        stack.app.document("/answer-get", "<Response><Speak>Got</Speak></Response>")
        stack.app.document("/fallback", scen.answer)
        scen.start()
        yield scen
        scen.close()


# --------------------------------------------------------------------------- the answer request
def test_answer_request_parameters_and_signatures(s):
    r = s.result("speak")
    answer = [req for req in r.requests if req.path == "/answer"]
    assert len(answer) == 1
    req = answer[0]
    form = req.form
    assert req.method == "POST"
    assert form["Event"] == "StartApp"
    assert form["CallStatus"] == "ringing"         # inbound: the answer XML runs before answer
    assert form["CallUUID"] == r.uuid
    assert form["From"] == "15551230001" and form["To"] == s.numbers["speak"]
    assert form["Direction"] == "inbound"
    assert form["CallerName"] == "Alice"
    assert form["ParentAuthID"] == s.stack.config.server.auth_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", form["SessionStart"])
    for key in ("BillRate", "STIRAttestation", "STIRVerification"):
        assert key in form
    h = req.headers
    assert req.headers["content-type"].startswith("application/x-www-form-urlencoded")
    url = s.stack.app.url("/answer")
    assert validate_signature(url, h["x-vobiz-signature-v2-nonce"], h["x-vobiz-signature-v2"], "test-token")
    # V3 as Vobiz documents it (the default v3_mode): base64(HMAC-SHA256(token, URL + "." + nonce))
    assert s.stack.config.webhooks.v3_mode == "docs"
    assert _documented_v3(url, h["x-vobiz-signature-v3-nonce"], "test-token") in h["x-vobiz-signature-v3"].split(",")
    assert h["x-vobiz-signature-v2-nonce"] != h["x-vobiz-signature-v3-nonce"]
    assert "x-vobiz-signature" in h and "x-vobiz-signature-ma-v2" in h
    # lazy answer: Speak answered, then spoke
    assert [a for a, _ in r.apps][:2] == ["answer", "speak"]
    assert r.summary["answered"] is True


def test_answer_and_hangup_by_get(s):
    r = s.result("answer_get")
    req = [q for q in r.requests if q.path == "/answer-get"][0]
    assert req.method == "GET" and req.body == b""
    assert req.args["app"] == "1" and req.args["Event"] == "StartApp" and req.args["CallUUID"] == r.uuid
    # V2 signs the URL without its query, whatever the method
    assert validate_signature(s.stack.app.url("/answer-get"), req.headers["x-vobiz-signature-v2-nonce"],
                              req.headers["x-vobiz-signature-v2"], "test-token")
    assert r.app_data("speak") == ["flite|slt|Got"]
    hangup = [q for q in r.requests if q.path == "/hangup"][0]
    assert hangup.method == "GET" and hangup.args["HangupCauseCode"] == "4010"


def test_end_of_document_hangup_webhook_full_field_set(s):
    r = s.result("speak")
    hangup = r.hangup
    for field in HANGUP_FIELDS:
        assert field in hangup, field
    assert hangup["HangupCauseCode"] == "4010"
    assert hangup["HangupCauseName"] == "End Of XML Instructions"
    assert hangup["HangupSource"] == "Vobiz"
    assert hangup["HangupCause"] == "NORMAL_CLEARING"
    assert hangup["CallStatus"] == "completed"
    assert hangup["Error"] == ""
    assert hangup["BillDuration"] == "60"          # rounded up to the 60 s pulse
    for stamp in ("StartTime", "AnswerTime", "EndTime"):
        datetime.strptime(hangup[stamp], "%Y-%m-%d %H:%M:%S")
    assert hangup["StartTime"] <= hangup["AnswerTime"] <= hangup["EndTime"]
    assert 0 <= int(hangup["Duration"]) <= 15
    assert r.summary["hangup_cause"] == "NORMAL_CLEARING"
    # the hangup webhook is signed too
    req = [q for q in r.requests if q.path == "/hangup"][0]
    assert validate_signature(s.stack.app.url("/hangup"), req.headers["x-vobiz-signature-v2-nonce"],
                              req.headers["x-vobiz-signature-v2"], "test-token")
    rec = r.record()
    assert rec["hangup_cause_code"] == 4010 and rec["hangup_source"] == "Vobiz"
    r.no_tracebacks()


def test_xml_hangup_after_answer_is_normal_hangup_by_answer_xml(s):
    hangup = s.result("xml_hangup").hangup
    for field in HANGUP_FIELDS:
        assert field in hangup, field
    assert (hangup["HangupCauseCode"], hangup["HangupCauseName"], hangup["HangupSource"]) == \
        ("4000", "Normal Hangup", "Answer XML")


def test_hangup_first_rejects_without_answering(s):
    r = s.result("reject")
    assert r.summary["answered"] is False
    assert r.summary["hangup_cause"] == "CALL_REJECTED"
    assert "answer" not in [a for a, _ in r.apps] and "speak" not in [a for a, _ in r.apps]
    h = r.hangup
    assert (h["HangupCause"], h["HangupCauseCode"], h["HangupCauseName"], h["HangupSource"]) == \
        ("CALL_REJECTED", "3020", "Rejected", "Answer XML")
    assert h["AnswerTime"] == "" and h["BillDuration"] == "0"


def test_hangup_busy_rejects_with_user_busy(s):
    r = s.result("busy")
    assert r.summary["answered"] is False and r.summary["hangup_cause"] == "USER_BUSY"
    h = r.hangup
    assert (h["HangupCause"], h["HangupCauseCode"], h["HangupCauseName"]) == ("USER_BUSY", "3010", "Busy Line")
    assert h["CallStatus"] == "busy"


def test_preanswer_plays_early_media_then_a_later_verb_answers(s):
    r = s.result("preanswer")
    apps = [a for a, _ in r.apps]
    assert apps[:4] == ["pre_answer", "speak", "answer", "speak"], apps
    events = r.summary["events"]
    assert events.index("CHANNEL_PROGRESS_MEDIA") < events.index("CHANNEL_ANSWER")
    ch = r.call.channel
    # the early Speak (5 chars) and Wait (1 s) ran before the answer
    assert (ch.answered_us - ch.progress_media_us) / 1e6 >= 1.1


def test_preanswer_play_then_hangup_rejects_unanswered(s):
    r = s.result("preanswer_play")
    assert [a for a, _ in r.apps] == ["pre_answer", "playback"]
    assert r.summary["answered"] is False
    h = r.hangup
    assert (h["HangupCauseCode"], h["HangupSource"], h["BillDuration"]) == ("3020", "Answer XML", "0")


def test_redirect_loop_ends_with_a_clear_error(s):
    r = s.result("redirect_loop", timeout=60)
    h = r.hangup
    assert h["HangupCauseCode"] == "5000" and "redirect loop" in h["Error"]
    r.no_tracebacks()


def test_leading_wait_delays_the_answer(s):
    r = s.result("wait_first")
    ch = r.call.channel
    assert "pre_answer" not in [a for a, _ in r.apps]
    assert (ch.answered_us - ch.created_us) / 1e6 >= 1.9
    assert "CHANNEL_PROGRESS_MEDIA" not in r.summary["events"]


def test_empty_response_ends_with_4010(s):
    r = s.result("empty")
    h = r.hangup
    assert (h["HangupCauseCode"], h["HangupSource"]) == ("4010", "Vobiz")
    assert r.summary["answered"] is False


# --------------------------------------------------------------------------- documents that fail
def _assert_error(r, code, name, *fragments):
    h = r.hangup
    assert (h["HangupCauseCode"], h["HangupCauseName"]) == (str(code), name), (h["HangupCauseCode"], h["Error"])
    assert h["HangupSource"] == "Error"
    for fragment in fragments:
        assert fragment in h["Error"], (fragment, h["Error"])
    rec = r.record()
    assert rec["hangup_cause_code"] == code
    for fragment in fragments:
        assert fragment in rec["error"]
    assert any(fragments[0] in line for line in r.errors()), r.errors()
    r.no_tracebacks()
    return h


def test_invalid_answer_xml_8011_with_line_and_column(s):
    r = s.result("invalid")
    h = _assert_error(r, 8011, "Invalid Answer XML", "line 4:")
    assert r.summary["answered"] is False


def test_invalid_attribute_is_8011_naming_it(s):
    _assert_error(s.result("bad_attr"), 8011, "Invalid Answer XML", "loop", "line 1:")


def test_invalid_action_xml_8012(s):
    r = s.result("action_invalid")
    _assert_error(r, 8012, "Invalid Action XML", "line 1:")
    assert r.forms(path="/menu")[0]["Digits"] == "5"


def test_unreachable_action_7012(s):
    _assert_error(s.result("action_unreachable"), 7012, "Error Reaching Action URL", "refused")


def test_invalid_redirect_xml_8014(s):
    _assert_error(s.result("redirect_invalid"), 8014, "Invalid Redirect XML", "line 1:11", "Bogus")


def test_unreachable_redirect_7014(s):
    _assert_error(s.result("redirect_unreachable"), 7014, "Error Reaching Redirect URL", "refused")
    _assert_error(s.result("redirect_500"), 7014, "Error Reaching Redirect URL", "500")


def test_unreachable_answer_url_7011(s):
    r = s.result("unreachable")
    _assert_error(r, 7011, "Error Reaching Answer URL", "refused")
    assert r.summary["answered"] is False


def test_caller_hangs_up_while_the_answer_is_fetched(s):
    r = s.result("hangup_while_fetching")
    h = r.hangup
    assert (h["HangupSource"], h["HangupCauseCode"], h["CallStatus"]) == ("Caller", "1000", "cancel")
    assert r.apps == [] and r.summary["answered"] is False
    assert not r.errors(), r.errors()
    r.no_tracebacks()


def test_caller_hangup_during_a_failing_redirect_fetch_is_the_callers(s):
    r = s.result("hangup_during_redirect")
    h = r.hangup
    assert (h["HangupSource"], h["HangupCauseCode"], h["Error"]) == ("Caller", "4000", "")
    r.no_tracebacks()


def test_answer_slower_than_the_read_timeout_is_7011(s):
    r = s.result("slow_answer")
    _assert_error(r, 7011, "Error Reaching Answer URL", "timeout")
    assert r.summary["duration_s"] < 6     # the read timeout (2 s), not the app's 3.5 s


def test_fallback_url_used_when_answer_url_is_down_or_5xx(s):
    for name in ("fallback_down", "fallback_5xx", "fallback_invalid"):
        r = s.result(name)
        fallback = [req for req in r.requests if req.path == "/fallback"]
        assert len(fallback) == 1, name
        form = fallback[0].args if name == "fallback_down" else fallback[0].form
        assert fallback[0].method == ("GET" if name == "fallback_down" else "POST")   # fallback_method
        assert form["Event"] == "StartApp" and form["CallStatus"] == "ringing"
        assert r.app_data("speak") and "From fallback" in r.app_data("speak")[0]
        assert r.hangup["HangupCauseCode"] == "4010"
    h = _assert_error(s.result("both_down"), 7011, "Error Reaching Answer URL", "refused", "fallback URL")
    assert h["Error"].count("connection refused") == 2       # what both URLs did


def test_redirect_get_and_post(s):
    r = s.result("redirect_get")
    nxt = [req for req in r.requests if req.path == "/redirect_get/next"]
    assert len(nxt) == 1 and nxt[0].method == "GET"
    assert nxt[0].args["Event"] == "Redirect" and nxt[0].args["x"] == "1"
    assert nxt[0].args["CallStatus"] == "ringing"
    assert r.app_data("speak") and not any("dead code" in d for d in r.app_data("speak"))
    assert r.hangup["HangupCauseCode"] == "4010"
    r = s.result("redirect_post")
    nxt = [req for req in r.requests if req.path == "/redirect_post/next"]
    assert len(nxt) == 1 and nxt[0].method == "POST"
    assert nxt[0].form["Event"] == "Redirect" and nxt[0].form["CallStatus"] == "in-progress"
    assert len(r.app_data("speak")) == 2
    assert r.hangup["HangupCauseCode"] == "4000" and r.hangup["HangupSource"] == "Answer XML"


# --------------------------------------------------------------------------- adversarial answers
@pytest.mark.parametrize("name, fragments", [
    ("billion_laughs", ("DOCTYPE",)),
    ("external_entity", ("DOCTYPE",)),
    ("too_large", ("100 KB",)),
    ("too_large_chunked", ("100 KB",)),
    ("binary", ("binary",)),
    ("wrong_root", ("Response",)),
    ("deep", ("nested too deeply",)),
    ("html", ("HTML",)),
])
def test_adversarial_answers_end_with_8011(s, name, fragments):
    r = s.result(name)
    _assert_error(r, 8011, "Invalid Answer XML", *fragments)
    assert r.summary["answered"] is False
    assert r.apps == []                        # nothing ran on the call
    assert "line 0:0" not in r.hangup["Error"]  # no position is made up when there is none


def test_too_large_body_is_not_read_to_the_end(s):
    s.result("too_large_chunked")
    assert s.stack.app.bytes_streamed < 10 * 1024 * 1024


# --------------------------------------------------------------------------- SDK-built documents
def test_vobiz_sdk_document_runs(s):
    r = s.result("sdk_vobiz")
    assert "<Speak" in SDK_VOBIZ
    speak = r.app_data("speak")
    assert speak == ["flite|rms|Hi there"]                 # MAN → rms
    assert r.app_data("send_dtmf") and r.app_data("send_dtmf")[0].startswith("12")
    assert r.hangup["HangupCauseCode"] == "4000"


def test_plivo_sdk_document_runs(s):
    r = s.result("sdk_plivo")
    assert r.app_data("speak") == ["flite|slt|Hello"]      # WOMAN → slt
    # an explicit reason="rejected" is the cause even after answer (Plivo's mapping)
    h = r.hangup
    assert (h["HangupSource"], h["HangupCauseCode"], h["HangupCause"]) == ("Answer XML", "3020", "CALL_REJECTED")
    assert h["CallStatus"] == "completed"


def test_declared_encoding(s):
    assert s.result("latin1").app_data("speak") == ["flite|slt|Caf\xe9"]


def test_declaration_comments_whitespace_and_cdata(s):
    r = s.result("decorated")
    assert r.app_data("speak")[0] == "flite|slt|Hi & bye"
    nxt = [req for req in r.requests if req.path == "/decorated/next"]
    assert len(nxt) == 1
    assert r.app_data("speak")[1] == "flite|slt|Done"
    assert r.hangup["HangupCauseCode"] == "4010"


def test_no_traceback_logged_by_any_call(s):
    for name in s.numbers:
        s.result(name)
    assert not s.logs.tracebacks(), [r.getMessage() for r in s.logs.tracebacks()]
