"""TwiML parsing (verbs/twiml/parser.py): documents built with the twilio package's VoiceResponse become
typed verbs with Twilio's attribute names and defaults; unknown verbs, bad or unknown attributes,
wrong nesting and verbs callfork does not run are all reported at once, each with its line:column;
`callfork validate --api twilio` reads TwiML."""
import pytest
from twilio.twiml.voice_response import Gather, VoiceResponse

from verbs.document import parse_document
from verbs.errors import XMLError
from verbs.twiml import ELEMENTS, NOT_SUPPORTED, RESPONSE_CHILDREN
from verbs.twiml.element import resolve
from verbs.twiml.parser import parse_twiml
from verbs.validate import validate_source


def parse(response):
    verbs, warnings = parse_twiml(str(response).encode())
    return verbs, warnings


def errors_of(text):
    with pytest.raises(XMLError) as info:
        parse_twiml(text.encode())
    return [str(e) for e in info.value.errors]


def test_every_verb_and_attribute_built_by_voice_response():
    r = VoiceResponse()
    r.say("Hello", voice="Polly.Amy", language="en-GB", loop=0)
    g = Gather(action="/menu", method="GET", timeout=3, finish_on_key="*", num_digits=2,
               action_on_empty_result=True, barge_in=False, input="dtmf")
    g.say("Press a key")
    g.play("prompt.wav", loop=2)
    g.pause(length=1)
    r.append(g)
    r.play("https://example.com/a.wav", loop=0)
    r.play(digits="12w#")
    r.pause(length=3)
    r.record(action="done", method="GET", timeout=2, finish_on_key="#", max_length=20, play_beep=False,
             trim="do-not-trim", recording_status_callback="/rs", recording_status_callback_method="GET",
             recording_status_callback_event="in-progress completed absent")
    r.redirect("../next", method="GET")
    r.reject(reason="busy")
    r.hangup()
    verbs, warnings = parse(r)
    assert warnings == []
    say, gather, play, digits, pause, record, redirect, reject, hangup = verbs
    assert (say.voice, say.language, say.loop, say.speakable_text()) == ("Polly.Amy", "en-GB", 0, "Hello")
    assert (gather.action, gather.method, gather.execution_timeout, gather.digit_end_timeout) == ("/menu", "GET", 3, 3)
    assert (gather.finish_on_key, gather.num_digits, gather.action_on_empty_result, gather.barge_in) == ("*", 2, True, False)
    assert [c.name for c in gather.children] == ["Say", "Play", "Pause"]
    assert gather.children[1].text == "prompt.wav" and gather.children[1].loop == 2
    assert (play.url, play.loop, play.digits) == ("https://example.com/a.wav", 0, None)
    assert (digits.digits, digits.text) == ("12w#", "")
    assert pause.length == 3
    assert (record.action, record.method, record.timeout, record.finish_on_key, record.max_length) == \
        ("done", "GET", 2, "#", 20)
    assert (record.play_beep, record.trim, record.status_url, record.status_method) == (False, "do-not-trim", "/rs", "GET")
    assert record.status_events == ("in-progress", "completed", "absent")
    assert (redirect.url, redirect.method) == ("../next", "GET")
    assert reject.reason == "busy"
    assert hangup.name == "Hangup"


def test_twilio_defaults():
    r = VoiceResponse()
    r.say("Hi")
    r.gather()
    r.record()
    r.pause()
    r.reject()
    r.redirect("https://example.com/x")
    say, gather, record, pause, reject, redirect = parse(r)[0]
    assert (say.voice, say.language, say.loop) == ("man", "en-US", 1)
    assert (gather.action, gather.method, gather.execution_timeout, gather.finish_on_key) == (None, "POST", 5, "#")
    assert (gather.action_on_empty_result, gather.barge_in, gather.input_type) == (False, True, "dtmf")
    assert gather.num_digits > 10 ** 6     # no limit
    assert (record.timeout, record.max_length, record.finish_on_key, record.play_beep) == (5, 3600, "1234567890*#", True)
    assert (record.trim, record.status_events, record.action) == ("trim-silence", ("completed",), None)
    assert pause.length == 1
    assert reject.reason == "rejected"
    assert redirect.method == "POST"


def test_say_keeps_ssml_as_text():
    r = VoiceResponse()
    say = r.say("Hello ")
    say.break_(time="300ms")
    say.say_as("AB", interpret_as="characters")
    say.sub("World Wide Web", alias="WWW")
    verbs, _ = parse(r)
    assert verbs[0].ssml
    # break → the pause mark, say-as characters spelled out, sub → its alias; VoiceResponse writes
    # the elements with nothing between them, so the spelled letters and the alias touch
    assert verbs[0].speakable_text(pause=",") == "Hello , A BWWW"


@pytest.mark.parametrize("voice", ["man", "woman", "alice", "Polly.Joanna", "Polly.Joanna-Neural", "Google.en-US-Standard-C"])
def test_twilio_voices(voice):
    r = VoiceResponse()
    r.say("x", voice=voice)
    assert parse(r)[0][0].voice == voice


def test_every_error_at_once_with_line_and_column():
    doc = ('<?xml version="1.0"?>\n<Response>\n'
           '  <Say voice="robot" loop="-1">hi</Say>\n'          # line 3
           '  <Gather numDigits="x" colour="red"><Record/></Gather>\n'  # line 4
           '  <Foo/>\n'                                          # line 5
           '  <say>x</say>\n'                                    # line 6
           '  <Pause length="2"><Say>no</Say></Pause>\n'         # line 7
           '  <Redirect/>\n'                                     # line 8
           '  <Play>ftp://example.com/a.wav</Play>\n'            # line 9
           '  <Reject reason="nope"/>\n'                         # line 10
           '  <Record trim="yes" recordingStatusCallbackEvent="done"/>\n'  # line 11
           '</Response>\n')
    errors = errors_of(doc)
    assert errors == [
        'line 3:3: <Say>: voice: "robot" is not a voice; allowed: man, woman, alice, Polly.<name>, Google.<name>',
        'line 3:3: <Say>: loop: "-1" is out of range; allowed: >= 0',
        'line 4:3: <Gather>: numDigits: "x" is not an integer',
        "line 4:3: <Gather>: unknown attribute colour; allowed: " + ", ".join(ELEMENTS["Gather"].attribute_names()),
        "line 4:38: <Record>: <Record> is not allowed inside <Gather>; allowed: Say, Play, Pause",
        "line 5:3: <Foo>: unknown element <Foo>; allowed inside <Response>: " + ", ".join(RESPONSE_CHILDREN),
        "line 6:3: <say>: unknown element <say> (did you mean <Say>?); allowed inside <Response>: "
        + ", ".join(RESPONSE_CHILDREN),
        "line 7:21: <Say>: <Say> is not allowed inside <Pause>; allowed: no elements",
        "line 8:3: <Redirect>: the URL (the element's text) is missing",
        'line 9:3: <Play>: URL: "ftp://example.com/a.wav" has scheme ftp://; allowed: http://, https://',
        'line 10:3: <Reject>: reason: "nope" is not allowed; allowed: rejected, busy',
        'line 11:3: <Record>: trim: "yes" is not allowed; allowed: trim-silence, do-not-trim',
        'line 11:3: <Record>: recordingStatusCallbackEvent: "done" is not allowed; use one or more of '
        "in-progress, completed, absent",
    ]


@pytest.mark.parametrize("input_", ["speech", "dtmf speech", "speech dtmf"])
def test_speech_input_is_refused_at_parse_time(input_):
    r = VoiceResponse()
    r.gather(input=input_, action="/g")
    column = str(r).index("<Gather") + 1
    assert errors_of(str(r)) == [f'line 1:{column}: <Gather>: input: speech recognition is not supported by '
                                 'callfork; use input="dtmf"']


def test_speech_only_attributes_are_accepted_with_a_warning():
    r = VoiceResponse()
    r.gather(speech_timeout="auto", hints="a, b", language="en-GB", action="/g")
    verbs, warnings = parse(r)
    assert len(warnings) == 3 and all("speech input" in w for w in warnings), warnings


@pytest.mark.parametrize("verb", ["Enqueue", "Leave", "Queue", "Pay", "Echo", "Sms", "Refer", "Prompt",
                                  "Message", "Siprec", "VirtualAgent", "Conversation"])
def test_verbs_callfork_does_not_run(verb):
    errors = errors_of(f"<Response>\n<{verb}/></Response>")
    assert len(errors) == 1 and errors[0].startswith(f"line 2:1: <{verb}>: <{verb}> ")
    assert "is not supported by callfork" in errors[0]


def test_dial_and_its_nouns_wait_for_their_modules():
    for name in ("Dial", "Connect", "Start", "Stop"):
        if name not in ELEMENTS:
            assert errors_of(f"<Response><{name}/></Response>") == [
                f"line 1:11: <{name}>: <{name}> is not supported by callfork yet"]
    assert not set(NOT_SUPPORTED) & set(ELEMENTS)


def test_play_needs_a_url_or_digits_not_both():
    assert errors_of('<Response><Play digits="1">https://example.com/a.wav</Play></Response>') == [
        "line 1:11: <Play>: give either a URL (the text) or digits, not both"]
    assert errors_of("<Response><Play/></Response>") == [
        "line 1:11: <Play>: the URL (the element's text) is missing"]
    assert errors_of('<Response><Play digits="12x"/></Response>') == [
        'line 1:11: <Play>: digits: "12x" is not allowed; use 0-9, *, # and w (a 0.5 s pause)']


def test_document_level_errors_name_twiml():
    assert errors_of("<Speak>x</Speak>") == [
        "line 1:1: <Speak>: the root element is <Speak>; a TwiML document's root must be <Response>"]
    assert errors_of("<Response>hello</Response>") == [
        "line 1:1: <Response>: text directly inside <Response> is not allowed; put it in <Say> (or another element)"]
    assert errors_of('<!DOCTYPE x [<!ENTITY a "b">]><Response/>') == [
        "line 1:1: DOCTYPE and entity declarations are not allowed in TwiML"]


def test_a_twilio_app_answer_is_twiml_whatever_its_content_type():
    r = VoiceResponse()
    r.say("hi")
    doc = parse_document(str(r), "text/plain", api="twilio")
    assert doc.kind == "twiml" and [v.name for v in doc.verbs] == ["Say"]
    with pytest.raises(XMLError):
        parse_document("<Response><Speak>hi</Speak></Response>", "application/xml", api="twilio")


class _Call:
    document_url = "https://app.example.com/voice/answer?x=1"


@pytest.mark.parametrize("url,expected", [
    ("next", "https://app.example.com/voice/next"),
    ("/top", "https://app.example.com/top"),
    ("../up?a=b", "https://app.example.com/up?a=b"),
    ("?step=2", "https://app.example.com/voice/answer?step=2"),
    ("https://other.example.com/x", "https://other.example.com/x"),
])
def test_relative_urls_resolve_against_the_document_url(url, expected):
    assert resolve(_Call(), url) == expected


def test_validate_reads_twiml_with_api_twilio(tmp_path):
    r = VoiceResponse()
    r.say("Hello")
    r.gather(action="menu", num_digits=1).say("Press one")
    path = tmp_path / "answer.xml"
    doc = str(r)
    path.write_text(doc)
    code, text = validate_source(str(path), api="twilio")
    assert code == 0, text
    say, gather, prompt = (doc.index(tag) + 1 for tag in ("<Say>Hello", "<Gather", "<Say>Press"))
    assert text.splitlines() == [f"{path}: valid TwiML, 2 verbs", f"  1:{say} Say 'Hello'",
                                 f"  1:{gather} Gather action=menu numDigits=1", f"    1:{prompt} Say 'Press one'"]
    code, text = validate_source(str(path))          # the default reads it as Vobiz XML
    assert code == 1 and "unknown element <Say>" in text
    path.write_text("<Response><Gather input='speech'/><Bogus/></Response>")
    code, text = validate_source(str(path), api="twilio")
    assert code == 1
    assert text.splitlines()[0] == f"{path}: invalid: 2 errors"
