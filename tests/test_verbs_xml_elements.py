"""Vobiz XML elements: every attribute's default and validation (https://docs.vobiz.ai/xml)."""
import pytest

from verbs import XMLError, parse_document


def parse(xml):
    return parse_document(xml, "application/xml").verbs


def one(xml_element):
    verbs = parse(f"<Response>{xml_element}</Response>")
    assert len(verbs) == 1
    return verbs[0]


def errors_of(xml):
    with pytest.raises(XMLError) as info:
        parse_document(xml, "application/xml")
    return info.value.errors


# Defaults, straight from the attribute tables of vobiz.md (§2.2-§2.11, §3.1, §4.1, and §2.9's GetDigits).
DEFAULTS = [
    ("<Speak>Hi</Speak>", {"voice": "WOMAN", "language": "en-US", "loop": 1}),
    ("<Play>https://a.example/x.mp3</Play>", {"loop": 1}),
    ("<Wait/>", {"length": 1, "silence": False, "min_silence": 2000, "beep": False}),
    ("<Hangup/>", {"reason": None, "schedule": None}),
    ("<Redirect>https://a.example/next</Redirect>", {"method": "POST"}),
    ("<DTMF>12</DTMF>", {"async_": True, "ignored": False}),
    ('<Gather action="https://a.example/g"/>',
     {"method": "POST", "execution_timeout": 15, "digit_end_timeout": "auto", "speech_end_timeout": "auto",
      "finish_on_key": "#", "num_digits": 32, "speech_model": "default", "language": "en-US",
      "interim_speech_results_callback_method": "POST", "log": True, "redirect": True,
      "profanity_filter": False}),
    ('<GetDigits/>',
     {"method": "POST", "execution_timeout": 5, "digit_end_timeout": 2, "finish_on_key": "#", "num_digits": 99,
      "retries": 1, "redirect": True, "play_beep": False, "valid_digits": "1234567890*#", "log": True,
      "input_type": "dtmf"}),
    ("<Record/>",
     {"method": "POST", "file_format": "mp3", "redirect": False, "timeout": 60, "max_length": 60,
      "play_beep": True, "finish_on_key": "1234567890*#", "record_session": False,
      "start_on_dial_answer": False, "transcription_type": "auto", "transcription_method": "POST",
      "callback_method": "POST", "action": None, "callback_url": None}),
    ("<Stream>wss://a.example/ws</Stream>",
     {"bidirectional": False, "audio_track": "inbound", "stream_timeout": 86400,
      "status_callback_method": "POST", "content_type": "audio/x-l16;rate=8000", "max_retries": 0,
      "keep_call_alive": False, "extra_headers": {}, "status_callback_url": None}),
    ("<Dial>+14155550101</Dial>",
     {"method": "POST", "callback_method": "POST", "redirect": True, "timeout": 120, "time_limit": 14400,
      "hangup_on_star": False, "dial_music": "real"}),
    ("<Conference>room1</Conference>",
     {"muted": False, "beep": True, "start_conference_on_enter": True, "end_conference_on_exit": False,
      "stay_alone": False, "relay_dtmf": False, "hangup_on_star": False, "callback_method": "POST",
      "record": False, "record_file_format": "mp3", "time_limit": 14400, "method": "POST",
      "max_participants": None}),
]


@pytest.mark.parametrize("xml,expected", DEFAULTS, ids=[d[0].split()[0].strip("<>/") for d in DEFAULTS])
def test_defaults(xml, expected):
    verb = one(xml)
    for name, value in expected.items():
        assert getattr(verb, name) == value, name


def test_verb_names_and_positions():
    verbs = parse("<Response>\n  <Speak>Hi</Speak>\n  <Wait length=\"2\"/>\n"
                  "  <Dial><Number>15550100</Number></Dial>\n</Response>")
    assert [(v.name, v.line, v.column) for v in verbs] == [("Speak", 2, 3), ("Wait", 3, 3), ("Dial", 4, 3)]
    assert verbs[0].stop() is None


def test_every_attribute_given_is_typed():
    speak = one('<Speak voice="man" language="fr-FR" loop="0">Bonjour</Speak>')
    assert (speak.voice, speak.language, speak.loop) == ("MAN", "fr-FR", 0)
    assert one('<Speak voice="Polly.Amy" language="en-GB">Hi</Speak>').voice == "Polly.Amy"
    wait = one('<Wait length="10" silence="TRUE" minSilence="3000"/>')
    assert (wait.length, wait.silence, wait.min_silence) == (10, True, 3000)
    hangup = one('<Hangup reason="busy" schedule="30"/>')
    assert (hangup.reason, hangup.schedule) == ("busy", 30)
    record = one('<Record action="https://a.example/r" fileFormat="wav" timeout="5" maxLength="300" '
                 'playBeep="false" finishOnKey="*#" recordSession="true" transcriptionType="hybrid" '
                 'transcriptionUrl="https://a.example/t" transcriptionMethod="GET" callbackUrl="https://a.example/c" '
                 'callbackMethod="GET" redirect="true"/>')
    assert (record.action, record.file_format, record.timeout, record.max_length, record.play_beep,
            record.finish_on_key, record.record_session, record.transcription_type, record.transcription_url,
            record.transcription_method, record.callback_url, record.callback_method, record.redirect) == (
        "https://a.example/r", "wav", 5, 300, False, "*#", True, "hybrid", "https://a.example/t", "GET",
        "https://a.example/c", "GET", True)
    gather = one('<Gather action="https://a.example/g" method="GET" inputType="dtmf speech" executionTimeout="60" '
                 'digitEndTimeout="2" speechEndTimeout="10" finishOnKey="none" numDigits="1" '
                 'speechModel="phone_call" hints="sales, support" language="en-GB" '
                 'interimSpeechResultsCallback="https://a.example/i" interimSpeechResultsCallbackMethod="GET" '
                 'log="false" redirect="false" profanityFilter="true"><Speak>Menu</Speak></Gather>')
    assert (gather.method, gather.input_type, gather.execution_timeout, gather.digit_end_timeout,
            gather.speech_end_timeout, gather.finish_on_key, gather.num_digits, gather.speech_model,
            list(gather.hints), gather.language, gather.interim_speech_results_callback,
            gather.interim_speech_results_callback_method, gather.log, gather.redirect, gather.profanity_filter) == (
        "GET", "dtmf speech", 60, 2, 10, "", 1, "phone_call", ["sales", "support"], "en-GB",
        "https://a.example/i", "GET", False, False, True)
    assert gather.wants_dtmf and gather.wants_speech   # speech parses; the executor reports it unsupported
    assert [c.name for c in gather.children] == ["Speak"]


def test_get_digits_maps_onto_gather_names():
    digits = one('<GetDigits action="https://a.example/d" timeout="7" digitTimeout="3" retries="2" '
                 'validDigits="123" invalidDigitsSound="https://a.example/bad.wav" playBeep="true" numDigits="4">'
                 '<Speak>Enter</Speak><Wait length="1"/></GetDigits>')
    assert (digits.execution_timeout, digits.digit_end_timeout, digits.retries, digits.valid_digits,
            digits.invalid_digits_sound, digits.play_beep, digits.num_digits, digits.input_type) == (
        7, 3, 2, "123", "https://a.example/bad.wav", True, 4, "dtmf")
    getinput = one('<GetInput action="https://a.example/i" inputType="speech"><Wait/></GetInput>')
    gather = one('<Gather action="https://a.example/i"/>')
    # one executor serves all three: GetInput and Gather carry GetDigits' extras too
    for verb in (getinput, gather):
        assert (verb.retries, verb.valid_digits, verb.play_beep) == (1, "1234567890*#", False)
    assert getinput.input_type == "speech"


def test_stream_attributes():
    stream = one('<Stream bidirectional="true" audioTrack="inbound" streamTimeout="60" '
                 'statusCallbackUrl="https://a.example/s" statusCallbackMethod="GET" '
                 'contentType="audio/x-l16;rate=16000" extraHeaders="test1=12,test2=123" maxRetries="3" '
                 'keepCallAlive="true">\n   wss://a.example/ws?x=1#frag\n  </Stream>')
    assert stream.url == "wss://a.example/ws?x=1"           # trimmed, fragment stripped
    assert (stream.bidirectional, stream.stream_timeout, stream.status_callback_method, stream.content_type,
            stream.encoding, stream.sample_rate, stream.max_retries, stream.keep_call_alive) == (
        True, 60, "GET", "audio/x-l16;rate=16000", "audio/x-l16", 16000, 3, True)
    assert stream.extra_headers == {"test1": "12", "test2": "123"}
    assert one("<Stream>ws://127.0.0.1:9/ws</Stream>").url == "ws://127.0.0.1:9/ws"
    mulaw = one('<Stream contentType="audio/x-mulaw;rate=8000">wss://a/ws</Stream>')
    assert (mulaw.encoding, mulaw.sample_rate) == ("audio/x-mulaw", 8000)


@pytest.mark.parametrize("raw,expected", [("-1", 0), ("-100", 0), ("11", 10), ("1000", 10), ("abc", 0),
                                          ("2.5", 0), ("0", 0), ("10", 10), ("5", 5)])
def test_stream_max_retries_is_clamped(raw, expected):
    stream = one(f'<Stream maxRetries="{raw}">wss://a/ws</Stream>')
    assert stream.max_retries == expected
    if raw not in ("0", "10", "5"):
        assert any("maxRetries" in w for w in stream.warnings)


def test_stream_24k_content_type_is_refused_with_the_reason():
    (error,) = errors_of('<Response><Stream contentType="audio/x-l16;rate=24000">wss://a/ws</Stream></Response>')
    assert error.element == "Stream" and "contentType" in error.message
    assert "24000" in error.message and "refuse" in error.message and "inbound" in error.message


@pytest.mark.parametrize("track", ["outbound", "both"])
def test_bidirectional_stream_needs_inbound_track(track):
    (error,) = errors_of(f'<Response><Stream bidirectional="true" audioTrack="{track}">wss://a/ws</Stream></Response>')
    assert "bidirectional" in error.message and "inbound" in error.message and track in error.message


def test_keep_call_alive_without_bidirectional_is_a_warning():
    doc = parse_document('<Response><Stream keepCallAlive="true">wss://a/ws</Stream></Response>', "text/xml")
    assert doc.verbs[0].keep_call_alive is True
    assert any("keepCallAlive" in w for w in doc.verbs[0].warnings)
    assert any("keepCallAlive" in w for w in doc.warnings)


@pytest.mark.parametrize("headers", ["a=1;b=2", "a-b=1", "a=1,b", "a=x y", "k=" + "v" * 600, "a=1,a=2", "=1"])
def test_stream_extra_headers_rules(headers):
    (error,) = errors_of(f'<Response><Stream extraHeaders="{headers}">wss://a/ws</Stream></Response>')
    assert "extraHeaders" in error.message


def test_stream_extra_headers_512_bytes_is_the_limit():
    ok = "k=" + "v" * 510
    assert len(ok) == 512
    assert one(f'<Stream extraHeaders="{ok}">wss://a/ws</Stream>').extra_headers == {"k": "v" * 510}
    (error,) = errors_of(f'<Response><Stream extraHeaders="{ok}v">wss://a/ws</Stream></Response>')
    assert "513" in error.message and "512" in error.message


# (element, bad attribute, words the message must contain: the attribute and what is allowed)
INVALID = [
    ('<Speak loop="-1">Hi</Speak>', ["loop"]),
    ('<Speak loop="x">Hi</Speak>', ["loop"]),
    ('<Speak voice="ROBOT">Hi</Speak>', ["voice", "WOMAN", "MAN"]),
    ('<Speak language="xx-YY">Hi</Speak>', ["language", "en-US"]),
    ('<Play loop="two">https://a/x.mp3</Play>', ["loop"]),
    ('<Wait length="0"/>', ["length"]),
    ('<Wait silence="yes"/>', ["silence", "true", "false"]),
    ('<Wait minSilence="0" silence="true"/>', ["minSilence"]),
    ('<Wait length="2" silence="true" minSilence="2000"/>', ["minSilence", "length"]),
    ('<Wait beep="1"/>', ["beep"]),
    ('<Hangup reason="normal"/>', ["reason", "rejected", "busy"]),
    ('<Hangup schedule="0"/>', ["schedule"]),
    ('<Redirect method="PUT">https://a/x</Redirect>', ["method", "GET", "POST"]),
    ('<DTMF async="maybe">1</DTMF>', ["async"]),
    ("<Gather/>", ["action", "required"]),
    ('<Gather action="https://a/g" method="PATCH"/>', ["method", "GET", "POST"]),
    ('<Gather action="https://a/g" inputType="voice"/>', ["inputType", "dtmf", "speech"]),
    ('<Gather action="https://a/g" executionTimeout="4"/>', ["executionTimeout", "5", "60"]),
    ('<Gather action="https://a/g" executionTimeout="61"/>', ["executionTimeout", "5", "60"]),
    ('<Gather action="https://a/g" digitEndTimeout="1"/>', ["digitEndTimeout", "auto"]),
    ('<Gather action="https://a/g" speechEndTimeout="11"/>', ["speechEndTimeout", "auto"]),
    ('<Gather action="https://a/g" finishOnKey="ab"/>', ["finishOnKey", "none"]),
    ('<Gather action="https://a/g" numDigits="0"/>', ["numDigits", "32"]),
    ('<Gather action="https://a/g" numDigits="33"/>', ["numDigits", "32"]),
    ('<Gather action="https://a/g" speechModel="best"/>', ["speechModel", "default", "phone_call"]),
    ('<Gather action="https://a/g" log="no"/>', ["log"]),
    ('<Gather action="https://a/g" redirect="no"/>', ["redirect"]),
    ('<Gather action="https://a/g" profanityFilter="1"/>', ["profanityFilter"]),
    ('<Gather action="https://a/g" interimSpeechResultsCallback="ftp://a/i"/>', ["interimSpeechResultsCallback", "http"]),
    ('<Gather action="https://a/g" hints="' + ",".join(["x"] * 501) + '"/>', ["hints", "500"]),
    ('<Gather action="https://a/g" hints="' + "x" * 101 + '"/>', ["hints", "100"]),
    ('<Gather action="mailto:x@y"/>', ["action", "http"]),
    ('<GetDigits validDigits="12a"/>', ["validDigits"]),
    ('<GetDigits retries="0"/>', ["retries"]),
    ('<GetDigits timeout="x"/>', ["timeout"]),
    ('<GetDigits inputType="dtmf"/>', ["inputType", "validDigits"]),   # not a GetDigits attribute
    ('<Record fileFormat="ogg"/>', ["fileFormat", "mp3", "wav"]),
    ('<Record timeout="0"/>', ["timeout"]),
    ('<Record maxLength="-5"/>', ["maxLength"]),
    ('<Record finishOnKey="x"/>', ["finishOnKey"]),
    ('<Record transcriptionType="manual"/>', ["transcriptionType", "auto", "hybrid"]),
    ('<Record callbackMethod="DELETE"/>', ["callbackMethod"]),
    ('<Record recordSession="true" startOnDialAnswer="true"/>', ["recordSession", "startOnDialAnswer"]),
    ('<Stream audioTrack="left">wss://a/ws</Stream>', ["audioTrack", "inbound", "outbound", "both"]),
    ('<Stream streamTimeout="0">wss://a/ws</Stream>', ["streamTimeout"]),
    ('<Stream statusCallbackMethod="PUT">wss://a/ws</Stream>', ["statusCallbackMethod", "GET", "POST"]),
    ('<Stream contentType="audio/opus">wss://a/ws</Stream>',
     ["contentType", "audio/x-l16;rate=8000", "audio/x-l16;rate=16000", "audio/x-mulaw;rate=8000"]),
    ('<Stream bidirectional="yes">wss://a/ws</Stream>', ["bidirectional"]),
    ('<Stream statusCallbackUrl="wss://a/cb">wss://a/ws</Stream>', ["statusCallbackUrl", "http"]),
    ("<Stream>https://a/ws</Stream>", ["URL", "ws://", "wss://"]),
    ("<Stream>   </Stream>", ["URL", "missing"]),
    ('<Stream url="wss://a/ws"/>', ["url", "text"]),
    ("<Play>ftp://a/x.mp3</Play>", ["URL", "http"]),
    ("<Play>x.mp3</Play>", ["URL"]),
    ("<Play/>", ["URL", "missing"]),
    ("<Redirect>/relative</Redirect>", ["URL"]),
    ("<Speak>  </Speak>", ["nothing to speak"]),
    ('<Dial timeout="0">+1415</Dial>', ["timeout"]),
    ('<Dial confirmKey="A">+14155550101</Dial>', ["confirmKey"]),
    ('<Dial dialMusic="music">+14155550101</Dial>', ["dialMusic"]),
    ("<Dial/>", ["Number", "User"]),
    ("<Dial><Number>not-a-number</Number></Dial>", ["phone number"]),
    ("<Dial><User>agent</User></Dial>", ["SIP"]),
    ('<Dial><Number sendDigits="12x">+14155550101</Number></Dial>', ["sendDigits"]),
    ("<Conference/>", ["text", "missing"]),
    ('<Conference maxMembers="5" maxParticipants="5">r</Conference>', ["maxMembers", "maxParticipants"]),
    ('<Conference recordFileFormat="ogg">r</Conference>', ["recordFileFormat"]),
]


@pytest.mark.parametrize("element,words", INVALID, ids=[i[0][:40] for i in INVALID])
def test_invalid_attribute_values(element, words):
    errors = errors_of(f"<Response>\n{element}</Response>")
    assert len(errors) == 1, [str(e) for e in errors]
    text = errors[0].message
    for word in words:
        assert word in text, (word, text)
    tag = element[1:].split()[0].split(">")[0].split("/")[0]
    assert errors[0].element in (tag, "Number", "User")
    assert errors[0].line == 2 and errors[0].column >= 1


def test_unknown_attribute_names_it_and_lists_allowed():
    (error,) = errors_of('<Response><Wait lenght="3"/></Response>')
    assert "lenght" in error.message
    for name in ("length", "silence", "minSilence", "beep"):
        assert name in error.message


def test_attribute_case_gets_a_hint():
    (error,) = errors_of('<Response><Wait Length="3"/></Response>')
    assert "did you mean length" in error.message


def test_plivo_only_stream_attributes_are_ignored_with_a_warning():
    stream = one('<Stream noiseCancellation="true" noiseCancellationLevel="85">wss://a/ws</Stream>')
    assert any("noiseCancellation" in w and "ignored" in w for w in stream.warnings)


def test_conference_max_members_is_an_alias_of_max_participants():
    assert one('<Conference maxMembers="7">room</Conference>').max_participants == 7
    assert one('<Conference maxParticipants="8">room</Conference>').max_participants == 8
    conf = one("<Conference>  Sales Room </Conference>")
    assert conf.room == "Sales Room"


def test_dial_targets_and_their_plan():
    dial = one('<Dial callerId="+14155550100" callerName="Front desk" timeout="20" timeLimit="60" '
               'hangupOnStar="true" digitsMatch="*9, #12" digitsMatchBLeg="0" sipHeaders="Team=ops">'
               '<Number sendDigits="ww12">+14155550101</Number><User>sip:a@b.example</User></Dial>')
    assert [t.name for t in dial.targets] == ["Number", "User"]
    assert dial.digits_match == ("*9", "#12") and dial.digits_match_b_leg == ("0",)
    shorthand = one("<Dial>+14155550101</Dial>")
    assert [(t.name, t.text) for t in shorthand.targets] == [("Number", "+14155550101")]


@pytest.mark.parametrize("xml, words", [
    ('<Dial callerId="front desk">+14155550101</Dial>', ["callerId"]),
    ('<Dial callerName="Smith, John">+14155550101</Dial>', ["callerName"]),
    ('<Dial digitsMatch="*9,ab">+14155550101</Dial>', ["digitsMatch", "ab"]),
    ('<Dial confirmSound="ftp://x/y">+14155550101</Dial>', ["confirmSound"]),
])
def test_dial_refuses_what_it_cannot_dial(xml, words):
    errors = [str(e) for e in errors_of(f"<Response>{xml}</Response>")]
    assert errors and all(any(w in e for e in errors) for w in words), errors


def test_dial_sip_headers_accept_both_key_forms():
    user = one('<Dial><User sipHeaders="ReasonX-VH=billing,Team=ops">sip:a@b.example</User></Dial>').children[0]
    assert user.sip_headers == {"Reason": "billing", "Team": "ops"}


def test_record_inside_dial_starts_on_answer():
    dial = one('<Dial><Number>+14155550101</Number><Record callbackUrl="https://a/r"/></Dial>')
    assert dial.record.start_on_dial_answer is True and dial.record.in_dial
    assert dial.record.warnings   # startOnDialAnswer was implied
    explicit = one('<Dial><Number>+14155550101</Number><Record startOnDialAnswer="true"/></Dial>')
    assert explicit.record.start_on_dial_answer and not explicit.record.warnings


def test_record_with_nested_stream():
    record = one('<Record maxLength="3600"><Stream bidirectional="true" keepCallAlive="true">wss://a/ws</Stream></Record>')
    assert record.stream.name == "Stream" and record.stream.keep_call_alive
    assert record.background
    errors = errors_of("<Response><Record><Stream>wss://a/1</Stream><Stream>wss://a/2</Stream></Record></Response>")
    assert any("at most one" in e.message for e in errors)


@pytest.mark.parametrize("digits", ["1234567890*#wW", "12w#", "W"])
def test_dtmf_valid_digits(digits):
    dtmf = one(f"<DTMF> {digits} </DTMF>")
    assert dtmf.digits == digits and not dtmf.ignored and not dtmf.warnings


@pytest.mark.parametrize("digits", ["12a", "1 2", "+1", ""])
def test_dtmf_other_characters_make_it_ignored_not_an_error(digits):
    dtmf = one(f"<DTMF>{digits}</DTMF>")
    assert dtmf.ignored is True and dtmf.warnings


# Nesting rules: vobiz.md §1.2
NESTING_OK = [
    '<Gather action="https://a/g"><Speak>a</Speak><Play>https://a/x.mp3</Play></Gather>',
    '<GetDigits><Speak>a</Speak><Play>https://a/x.mp3</Play><Wait/></GetDigits>',
    '<GetInput action="https://a/g"><Wait/><Speak>a</Speak></GetInput>',
    "<PreAnswer><Speak>a</Speak><Play>https://a/x.mp3</Play><Wait/></PreAnswer>",
    "<Dial><Number>+14155550101</Number><User>sip:a@b.example</User><Record/></Dial>",
    "<Record><Stream>wss://a/ws</Stream></Record>",
]
NESTING_BAD = [
    ('<Gather action="https://a/g"><Wait/></Gather>', "Wait", "Gather", ["Speak", "Play"]),
    ('<Gather action="https://a/g"><Gather action="https://a/g"/></Gather>', "Gather", "Gather", ["Speak", "Play"]),
    ("<PreAnswer><Hangup/></PreAnswer>", "Hangup", "PreAnswer", ["Speak", "Play", "Wait"]),
    ("<PreAnswer><DTMF>1</DTMF></PreAnswer>", "DTMF", "PreAnswer", ["Speak", "Play", "Wait"]),
    ("<Dial><Speak>a</Speak></Dial>", "Speak", "Dial", ["Number", "User", "Record"]),
    ("<Record><Play>https://a/x.mp3</Play></Record>", "Play", "Record", ["Stream"]),
    ("<Stream><Speak>a</Speak>wss://a/ws</Stream>", "Speak", "Stream", []),
    ("<Number>+1415</Number>", "Number", "Response", ["Speak", "Stream", "Dial"]),
    ("<Play><Speak>x</Speak>https://a/x.mp3</Play>", "Speak", "Play", []),
]


@pytest.mark.parametrize("xml", NESTING_OK)
def test_allowed_nesting(xml):
    assert one(xml).children


@pytest.mark.parametrize("xml,child,parent,allowed", NESTING_BAD)
def test_forbidden_nesting(xml, child, parent, allowed):
    errors = errors_of(f"<Response>{xml}</Response>")
    matching = [e for e in errors if e.element == child]
    assert matching, [str(e) for e in errors]
    assert f"<{parent}>" in matching[0].message
    for name in allowed:
        assert name in matching[0].message


def test_unknown_element_lists_allowed_and_hints_case():
    (error,) = errors_of("<Response><speak>hi</speak></Response>")
    assert error.element == "speak" and "did you mean <Speak>" in error.message
    for name in ("Speak", "Play", "Wait", "Hangup", "Redirect", "PreAnswer", "DTMF", "Gather", "Record",
                 "Stream", "Dial", "Conference"):
        assert name in error.message


@pytest.mark.parametrize("tag", ["MultiPartyCall", "Message"])
def test_sdk_elements_vobiz_lacks_are_not_supported(tag):
    (error,) = errors_of(f'<Response><{tag} role="agent">x</{tag}></Response>')
    assert error.element == tag and "not supported by callfork" in error.message


def test_all_errors_of_a_document_are_collected():
    xml = ("<Response>\n"
           '  <Speak loop="x">Hi</Speak>\n'
           '  <Wait length="0" beep="nope"/>\n'
           "  <Foo/>\n"
           '  <Stream audioTrack="x">http://a/ws</Stream>\n'
           "</Response>")
    with pytest.raises(XMLError) as info:
        parse_document(xml, "application/xml")
    err = info.value
    got = [(e.line, e.column, e.element) for e in err.errors]
    assert got == [(2, 3, "Speak"), (3, 3, "Wait"), (3, 3, "Wait"), (4, 3, "Foo"), (5, 3, "Stream"),
                   (5, 3, "Stream")]
    assert (err.line, err.column, err.element) == (2, 3, "Speak")
    assert str(err) == f"line 2:3: <Speak>: {err.message}"
    assert str(err.errors[3]).startswith("line 4:3: <Foo>: ")


def test_text_where_none_belongs_is_a_warning():
    wait = one("<Wait>five</Wait>")
    assert wait.text == "" and wait.warnings


def test_text_directly_in_response_is_an_error():
    (error,) = errors_of("<Response>hello<Speak>x</Speak></Response>")
    assert error.element == "Response"


def test_huge_numbers_are_errors_or_clamped():
    (error,) = errors_of(f'<Response><Wait length="{"9" * 5000}"/></Response>')
    assert "length" in error.message and "too large" in error.message
    assert one(f'<Stream maxRetries="{"9" * 5000}">wss://a/ws</Stream>').max_retries == 10
    assert one(f'<Stream maxRetries="-{"9" * 5000}">wss://a/ws</Stream>').max_retries == 0


def test_rules_across_attributes_are_checked_even_when_another_attribute_is_wrong():
    errors = errors_of('<Response><Stream bidirectional="true" audioTrack="both" contentType="audio/x-l16;rate=24000">'
                       "wss://a/ws</Stream></Response>")
    assert len(errors) == 2
    assert "contentType" in errors[0].message and "bidirectional" in errors[1].message
    # ... but a refused value does not cause a second, misleading error
    (error,) = errors_of('<Response><Wait length="x" silence="true" minSilence="5000"/></Response>')
    assert "length" in error.message


# The attribute names the SDK builders emit (vobiz.md §6.1, SDK-pypi to_dict) plus the Vobiz-only ones (§2-§4):
# every one of them must be a known attribute (a junk value may be refused, but never as "unknown").
SDK_ATTRIBUTES = {
    "Stream": "bidirectional audioTrack streamTimeout statusCallbackUrl statusCallbackMethod contentType extraHeaders "
              "keepCallAlive maxRetries",
    "Record": "action method fileFormat redirect timeout maxLength playBeep finishOnKey recordSession startOnDialAnswer "
              "transcriptionType transcriptionUrl transcriptionMethod transcriptionReportType callbackUrl "
              "callbackMethod recordChannelType",
    "Dial": "action method hangupOnStar timeLimit timeout callerId callerName confirmSound confirmTimeout confirmKey "
            "dialMusic callbackUrl callbackMethod redirect digitsMatch digitsMatchBLeg sipHeaders",
    "Number": "sendDigits sendOnPreanswer sendDigitsMode",
    "User": "sendDigits sendOnPreanswer sipHeaders",
    "GetInput": "action method inputType executionTimeout digitEndTimeout speechEndTimeout finishOnKey numDigits "
                "speechModel hints language interimSpeechResultsCallback interimSpeechResultsCallbackMethod log "
                "redirect profanityFilter",
    "Gather": "action method inputType executionTimeout digitEndTimeout speechEndTimeout finishOnKey numDigits "
              "speechModel hints language interimSpeechResultsCallback interimSpeechResultsCallbackMethod log "
              "redirect profanityFilter",
    "GetDigits": "action method timeout digitTimeout finishOnKey numDigits retries redirect playBeep validDigits "
                 "invalidDigitsSound log",
    "Conference": "muted enterSound exitSound startConferenceOnEnter endConferenceOnExit stayAlone waitSound maxMembers "
                  "record recordFileFormat timeLimit hangupOnStar action method callbackUrl callbackMethod digitsMatch "
                  "floorEvent redirect relayDTMF sendDigits recordWhenAlone transcriptionType transcriptionUrl "
                  "transcriptionMethod beep maxParticipants waitMethod",
    "Speak": "voice language loop",
    "Play": "loop",
    "Wait": "length silence minSilence beep",
    "Hangup": "reason schedule",
    "Redirect": "method",
    "DTMF": "async",
}
BODIES = {"Stream": "wss://a/ws", "Dial": "+14155550101", "Number": "+14155550101", "User": "sip:a@b.example",
          "Conference": "room", "Speak": "hi", "Play": "https://a/x.mp3", "Redirect": "https://a/n", "DTMF": "1"}


@pytest.mark.parametrize("element,attribute", [(e, a) for e, names in SDK_ATTRIBUTES.items() for a in names.split()])
def test_every_documented_attribute_is_known(element, attribute):
    inner = f'<{element} {attribute}="%%junk%%">{BODIES.get(element, "")}</{element}>'
    if element in ("Number", "User"):
        inner = f"<Dial>{inner}</Dial>"
    try:
        parse_document(f"<Response>{inner}</Response>", "application/xml")
    except XMLError as exc:
        for error in exc.errors:
            assert "unknown attribute" not in error.message, str(error)


# Attributes the reference types as boolean, integer, GET/POST method, enum or URL: a junk value is refused by name.
TYPED = {
    "Stream": "bidirectional keepCallAlive streamTimeout statusCallbackMethod audioTrack contentType "
              "statusCallbackUrl extraHeaders",
    "Record": "redirect playBeep recordSession startOnDialAnswer timeout maxLength method callbackMethod "
              "transcriptionMethod fileFormat transcriptionType action callbackUrl transcriptionUrl finishOnKey",
    "Dial": "redirect hangupOnStar timeout timeLimit method callbackMethod action callbackUrl confirmKey",
    "Number": "sendOnPreanswer sendDigits",
    "Gather": "log redirect profanityFilter executionTimeout numDigits method inputType speechModel action "
              "digitEndTimeout speechEndTimeout interimSpeechResultsCallbackMethod finishOnKey",
    "GetDigits": "redirect playBeep log timeout digitTimeout numDigits retries method validDigits action "
                 "invalidDigitsSound",
    "Conference": "muted beep startConferenceOnEnter endConferenceOnExit stayAlone relayDTMF hangupOnStar record "
                  "timeLimit maxParticipants maxMembers method callbackMethod callbackUrl action waitSound",
    "Speak": "loop voice",
    "Play": "loop",
    "Wait": "length silence minSilence beep",
    "Hangup": "reason schedule",
    "Redirect": "method",
    "DTMF": "async",
}


@pytest.mark.parametrize("element,attribute", [(e, a) for e, names in TYPED.items() for a in names.split()])
def test_junk_values_of_typed_attributes_are_refused(element, attribute):
    inner = f'<{element} {attribute}="%%junk%%">{BODIES.get(element, "")}</{element}>'
    if element == "Number":
        inner = f"<Dial>{inner}</Dial>"
    if element == "Gather" and attribute != "action":
        inner = inner.replace("<Gather ", '<Gather action="https://a/g" ')
    errors = errors_of(f"<Response>{inner}</Response>")
    assert [e.message.split(":")[0] for e in errors] == [attribute]
