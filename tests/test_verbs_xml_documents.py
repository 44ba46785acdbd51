"""Whole Vobiz XML documents: the SDK builders' real output (vobiz.md §6.2), docs examples, SSML, XML forms."""
from pathlib import Path

import pytest

from verbs import parse_document

FIXTURES = Path(__file__).parent / "fixtures" / "verbs"


def load(name):
    doc = parse_document((FIXTURES / name).read_bytes(), "application/xml")
    assert doc.kind == "vobiz"
    return doc


def test_sdk_example1_bidirectional_agent_stream():
    # StreamElement('wss://agent.example.com/ws', bidirectional=True, audioTrack='inbound', streamTimeout=3600,
    #   statusCallbackUrl=..., statusCallbackMethod='POST', contentType='audio/x-mulaw;rate=8000',
    #   extraHeaders='tenant=acme,agent=7', keepCallAlive=True)
    (stream,) = load("sdk_ex1_bidirectional_stream.xml").verbs
    assert stream.name == "Stream" and stream.url == "wss://agent.example.com/ws"
    assert stream.bidirectional is True and stream.audio_track == "inbound" and stream.stream_timeout == 3600
    assert stream.status_callback_url == "https://app.example.com/stream-status"
    assert stream.status_callback_method == "POST"
    assert (stream.encoding, stream.sample_rate) == ("audio/x-mulaw", 8000)
    assert stream.extra_headers == {"tenant": "acme", "agent": "7"}
    assert stream.keep_call_alive is True and stream.max_retries == 0
    assert not stream.warnings


def test_sdk_example2_voicemail():
    speak, record, hangup = load("sdk_ex2_voicemail.xml").verbs
    assert (speak.voice, speak.language, speak.text) == ("WOMAN", "en-US", "Please leave a message after the beep.")
    assert (record.action, record.method, record.file_format, record.redirect, record.timeout,
            record.max_length, record.play_beep, record.finish_on_key, record.callback_url,
            record.callback_method) == ("https://app.example.com/rec-action", "POST", "wav", False, 10, 120, True,
                                        "#", "https://app.example.com/rec-ready", "POST")
    assert not record.background          # a standalone Record blocks (voicemail)
    assert hangup.name == "Hangup" and hangup.reason is None


def test_sdk_example3_record_session_plus_stream():
    record, stream, speak = load("sdk_ex3_record_session_stream.xml").verbs
    assert (record.redirect, record.max_length, record.play_beep, record.record_session) == (False, 3600, False, True)
    assert record.callback_url == "https://app.example.com/rec-ready" and record.action is None
    assert record.background
    assert stream.bidirectional and stream.keep_call_alive and stream.url == "wss://agent.example.com/ws"
    assert speak.text == "Goodbye"


def test_sdk_example4_dial_getinput_wait_dtmf_redirect():
    dial, getinput, wait, dtmf, redirect = load("sdk_ex4_dial_getinput.xml").verbs
    assert (dial.action, dial.time_limit, dial.timeout, dial.caller_id, dial.callback_url, dial.redirect) == (
        "https://app.example.com/dial-result", 1800, 30, "+14155550100", "https://app.example.com/dial-events", False)
    number, user = dial.children
    assert (number.name, number.text, number.send_digits) == ("Number", "+14155550101", "wwww2410")
    assert (user.name, user.text) == ("User", "sip:agent@example.com")
    assert getinput.name == "GetInput"
    assert (getinput.action, getinput.method, getinput.input_type, getinput.execution_timeout,
            getinput.finish_on_key, getinput.num_digits, getinput.language, getinput.redirect) == (
        "https://app.example.com/menu", "POST", "dtmf speech", 10, "#", 1, "en-US", True)
    assert [c.text for c in getinput.children] == ["Press 1 or say sales."]
    assert wait.length == 2
    assert (dtmf.digits, dtmf.async_, dtmf.ignored) == ("12w#", False, False)
    assert (redirect.url, redirect.method) == ("https://app.example.com/next", "GET")


def test_sdk_compact_output():
    (stream,) = load("sdk_compact.xml").verbs
    assert stream.url == "wss://a/ws" and stream.bidirectional and stream.keep_call_alive is False


def test_github_builder_stream_with_declaration_and_max_retries():
    (stream,) = load("sdk_ex5_github_stream.xml").verbs
    assert (stream.encoding, stream.sample_rate, stream.max_retries) == ("audio/x-l16", 16000, 3)
    assert stream.keep_call_alive and stream.bidirectional


def test_github_builder_gather():
    gather, speak, hangup = load("sdk_github_gather.xml").verbs
    assert (gather.name, gather.action, gather.input_type, gather.num_digits, gather.execution_timeout) == (
        "Gather", "https://app.example.com/menu", "dtmf", 1, 10)
    assert gather.children[0].text == "Press 1 for sales, 2 for support."
    assert speak.text == "We didn't receive your input. Goodbye." and hangup.name == "Hangup"


def test_github_builder_dial_with_nested_record():
    dial, dtmf = load("sdk_github_dial_record.xml").verbs
    assert [c.name for c in dial.children] == ["Number", "Record"]
    assert dial.record.start_on_dial_answer and dial.record.callback_url == "https://app.example.com/rec-ready"
    assert dtmf.digits == "1w2#" and dtmf.async_ is False


def test_docs_record_with_nested_stream_older_form():
    play, record, play2 = load("vobiz_record_nested_stream.xml").verbs
    assert record.stream.url == "wss://your-server.com/ws" and record.stream.keep_call_alive
    assert (record.action, record.max_length, record.play_beep) == ("https://your-domain.com/record_action/", 3600, True)
    assert play.url == play2.url == "https://yourcdn.com/play.wav"


def test_docs_record_then_stream_sibling_form():
    verbs = load("vobiz_record_sibling_stream.xml").verbs
    assert [v.name for v in verbs] == ["Play", "Record", "Stream", "Play"]
    assert verbs[1].record_session and verbs[1].redirect is False
    assert verbs[1].line == 3 and verbs[2].line == 6


def test_docs_stream_examples_with_multiline_url():
    stream, speak = load("vobiz_stream_both_tracks.xml").verbs
    assert stream.url == "wss://stream.vobiz.ai/stream"
    assert (stream.audio_track, stream.stream_timeout) == ("both", 3600)
    assert stream.extra_headers == {"session": "abc123", "user": "john"}
    (bidi,) = load("vobiz_stream_bidirectional.xml").verbs
    assert bidi.bidirectional and bidi.keep_call_alive and bidi.sample_rate == 16000


def test_xml_declaration_comments_pis_whitespace_cdata():
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           "<!-- the app's answer -->\n"
           '<?some-pi data?>\n'
           "<Response>\n\n"
           "  <!-- first -->\n"
           "  <Speak>Tom <!-- inline --> &amp; <![CDATA[Jerry <3 & co]]></Speak>\n"
           "  \t\n"
           "  <Wait   length = \"3\"   />\n"
           "</Response>\n")
    for body in (xml.encode("utf-8"), xml):
        speak, wait = parse_document(body, "application/xml").verbs
        assert speak.speakable_text() == "Tom & Jerry <3 & co"
        assert (speak.line, speak.column) == (7, 3) and (wait.line, wait.column) == (9, 3)
        assert wait.length == 3


def test_declared_latin1_encoding_bytes():
    body = '<?xml version="1.0" encoding="ISO-8859-1"?><Response><Speak>Caf\xe9</Speak></Response>'.encode("latin-1")
    assert parse_document(body, "application/xml").verbs[0].text == "Caf\xe9"


def test_empty_response_has_no_verbs():
    assert parse_document("<Response/>", "application/xml").verbs == []
    assert parse_document("<Response>\n</Response>", "application/xml").verbs == []


def test_namespaced_response_is_read_by_local_names():
    doc = parse_document('<Response xmlns="urn:x"><Speak>Hi</Speak></Response>', "application/xml")
    assert doc.verbs[0].name == "Speak"


# SSML (vobiz.md §1.1: break, cont, emphasis, lang, p, phoneme, prosody, s, say-as, sub, w)
def test_ssml_children_are_kept_and_reduced_to_speakable_text():
    xml = ('<Response><Speak voice="Polly.Amy">'
           '<prosody rate="slow">Your code is</prosody> <say-as interpret-as="characters">AB12</say-as>.'
           '<break time="500ms"/>'
           'Visit <sub alias="World Wide Web">WWW</sub> <emphasis level="strong">now</emphasis>'
           '<p>New <s>sentence</s></p><phoneme alphabet="ipa" ph="t">tomato</phoneme> '
           '<lang xml:lang="fr-FR">merci</lang> <w role="x">word</w>'
           "</Speak></Response>")
    (speak,) = parse_document(xml, "application/xml").verbs
    assert speak.ssml is True
    tags = [c.tag for c in speak.content if not isinstance(c, str)]
    assert tags == ["prosody", "say-as", "break", "sub", "emphasis", "p", "phoneme", "lang", "w"]
    assert speak.speakable_text(pause="<pause>") == (
        "Your code is A B 1 2. <pause> Visit World Wide Web now New sentence tomato merci word")
    assert "<pause>" not in speak.speakable_text(pause=" ")
    assert speak.text.startswith("Your code is AB12.")   # plain text keeps what the SSML wraps


def test_ssml_errors():
    bad = '<Response><Speak>a<blink>b</blink><sub>x</sub><break time="long"/><Play>https://a/x</Play></Speak></Response>'
    from verbs import XMLError
    with pytest.raises(XMLError) as info:
        parse_document(bad, "application/xml")
    by_element = {e.element: e.message for e in info.value.errors}
    assert "unknown SSML element blink" in by_element["blink"] and "say-as" in by_element["blink"]
    assert "alias" in by_element["sub"]
    assert "time" in by_element["break"]
    assert "not allowed inside <Speak>" in by_element["Play"]


def test_speak_plain_text_is_speakable_text():
    (speak,) = parse_document("<Response><Speak>\n   Hello\n   world  </Speak></Response>", "text/xml").verbs
    assert speak.ssml is False and speak.speakable_text() == "Hello world" and speak.text == "Hello\n   world"
