"""TwiML <Dial> (Number, Sip, Conference), <Connect>/<Start>/<Stop> with <Stream> and <Parameter>, as
the twilio package's VoiceResponse builds them: what the parser makes of them (the plan a Dial
dials, a Stream's options) and the line:column errors of what callfork refuses."""
from twilio.twiml.voice_response import Connect, Dial, Start, Stop, Stream, VoiceResponse

from test_twiml_parser import errors_of
from verbs.twiml.parser import parse_twiml


def _parse(response):
    verbs, _warnings = parse_twiml(str(response).encode())
    return verbs


def test_dial_with_numbers_and_a_sip_uri_becomes_one_parallel_plan():
    r = VoiceResponse()
    dial = Dial(action="/after", timeout=12, time_limit=60, caller_id="+15550001111", hangup_on_star=True,
                ring_tone="uk")
    dial.number("+1 (415) 123-4567", send_digits="ww12#", status_callback="https://app.example.com/leg",
                status_callback_event="ringing answered")
    dial.sip("sip:alice@example.com")
    r.append(dial)
    r.dial("15550001111")
    first, bare = _parse(r)
    plan = first.plan()
    assert [(t.kind, t.address, t.send_digits, t.group) for t in plan.targets] == [
        ("number", "+14151234567", "ww12#", 0), ("sip", "sip:alice@example.com", None, 0)]
    assert (plan.timeout_s, plan.time_limit_s, plan.hangup_on_star, plan.caller_id) == (12, 60, True, "+15550001111")
    assert plan.ringback_file.startswith("tone_stream://%(400,200,400,450)")
    assert first.children[0].leg_status().events == ("ringing", "answered", "completed")
    assert first.children[1].leg_status() is None
    assert [t.address for t in bare.plan().targets] == ["15550001111"] and bare.plan().timeout_s == 30
    sequential = Dial(sequential=True)
    sequential.number("111")
    sequential.number("222")
    (seq,) = _parse(VoiceResponse().append(sequential))
    assert [t.group for t in seq.plan().targets] == [0, 1]


def test_what_dial_cannot_run_is_refused_with_its_position():
    assert errors_of('<Response>\n<Dial><Number url="https://x.example/whisper">123</Number>'
                     '<Sip url="https://x.example/whisper">sip:a@b.example?Y-Not=1</Sip></Dial></Response>') == [
        "line 2:7: <Number>: url (a TwiML document run on the callee before it is connected) is not "
        "supported by callfork: its Dial cannot run a document on the dialled leg",
        "line 2:59: <Sip>: url (a TwiML document run on the callee before it is connected) is not "
        "supported by callfork: its Dial cannot run a document on the dialled leg",
        'line 2:59: <Sip>: "Y-Not" is not a custom SIP header name: custom headers start with X-']
    assert errors_of("<Response><Dial/></Response>") == [
        "line 1:11: <Dial>: nothing to dial: add <Number>, <Sip> or <Conference> (or the number as text)"]
    assert errors_of("<Response><Dial><Conference>r</Conference><Number>12</Number></Dial></Response>") == [
        "line 1:11: <Dial>: <Conference> must be the only thing <Dial> dials"]
    assert errors_of('<Response><Dial record="always"><Number>not a number</Number></Dial></Response>')[1] == \
        'line 1:33: <Number>: "not a number" is not a phone number'


def test_conference_noun_attributes():
    r = VoiceResponse()
    dial = Dial(action="/left", hangup_on_star=True)
    dial.conference("Room 1", beep="onEnter", start_conference_on_enter=False, end_conference_on_exit=True,
                    max_participants=3, status_callback="https://app.example.com/conf",
                    status_callback_event="start end join leave", record="record-from-start")
    r.append(dial)
    (verb,) = _parse(r)
    conf = verb.conference
    assert (conf.room, conf.beep, conf.start_conference_on_enter, conf.end_conference_on_exit) == \
        ("Room 1", "onEnter", False, True)
    assert conf.status_callback_event == ("start", "end", "join", "leave") and conf.max_participants == 3
    assert errors_of('<Response><Dial><Conference statusCallbackEvent="start boom">r</Conference></Dial>'
                     '</Response>')[0].startswith("line 1:17: <Conference>: statusCallbackEvent: 'boom' is not")


def test_connect_start_and_stop_streams():
    r = VoiceResponse()
    connect = Connect(action="/next")
    stream = Stream(url="wss://bot.example.com/ws", name="bot", status_callback="https://app.example.com/s")
    stream.parameter(name="tier", value="gold")
    stream.parameter(name="greeting", value=" hi there ")
    connect.append(stream)
    r.append(connect)
    start = Start()
    start.stream(url="wss://rec.example.com/ws", track="both_tracks", name="rec")
    r.append(start)
    stop = Stop()
    stop.stream(name="rec")
    r.append(stop)
    c, s, st = _parse(r)
    o = c.children[0].stream_options(bidirectional=True)
    assert (o.dialect, o.track, o.encoding, o.sample_rate, o.bidirectional, o.twiml) == \
        ("twilio", "inbound", "mulaw", 8000, True, True)
    assert o.custom_parameters == {"tier": "gold", "greeting": " hi there "} and o.name == "bot"
    assert o.status_url == "https://app.example.com/s" and c.action == "/next"
    o = s.children[0].stream_options(bidirectional=False)
    assert (o.track, o.bidirectional, o.name) == ("both", False, "rec")
    assert st.children[0].stream_name == "rec"


def test_stream_errors():
    assert errors_of("<Response>\n<Connect><Stream/></Connect></Response>") == [
        "line 2:10: <Stream>: url is required (the app's ws:// or wss:// WebSocket)"]
    assert errors_of('<Response><Connect><Stream url="https://x.example/"/></Connect></Response>')[0].startswith(
        'line 1:20: <Stream>: url: "https://x.example/" has scheme https://')
    assert errors_of('<Response><Connect><Stream url="wss://a.example/"/><Stream url="wss://b.example/"/>'
                     '</Connect></Response>') == ["line 1:11: <Connect>: <Connect> takes one <Stream> (found 2)"]
    assert errors_of('<Response><Start><Stream url="wss://a.example/" track="all"/></Start></Response>')[0] \
        .startswith('line 1:18: <Stream>: track: "all" is not allowed')
    assert errors_of('<Response><Start><Stream url="wss://a.example/"><Parameter name="a" value="1"/>'
                     '<Parameter name="a" value="2"/></Stream></Start></Response>') == [
        "line 1:18: <Stream>: <Parameter> name 'a' is given twice"]
    assert errors_of("<Response><Connect><Room>r</Room></Connect></Response>")[0].startswith("line 1:20: <Room>")
    assert errors_of("<Response><Stop/></Response>") == ["line 1:11: <Stop>: <Stop> needs a <Stream name=...>"]


def test_twilio_attributes_callfork_does_not_act_on_are_warnings_not_errors():
    """As Twilio takes an attribute it does not act on, the call goes on: each one is a warning
    naming what callfork does instead (answering machine detection, REFER, coach, ...)."""
    from twilio.twiml.voice_response import Dial, VoiceResponse

    from verbs import parse_document
    r = VoiceResponse()
    d = Dial(recording_track="inbound", events="call-progress-event", refer_url="http://x/r")
    d.number("+15551230000", machine_detection="Enable", amd_status_callback="http://x/amd")
    r.append(d)
    room = Dial()
    room.conference("room", recording_status_callback="http://x/rs", coach="CA" + "0" * 32)
    r.append(room)
    doc = parse_document(str(r), "text/xml", api="twilio")
    assert [v.name for v in doc.verbs] == ["Dial", "Dial"]
    text = "\n".join(doc.warnings)
    for name in ("recordingTrack", "events", "referUrl", "machineDetection", "amdStatusCallback",
                 "recordingStatusCallback", "coach"):
        assert f"{name} is ignored" in text, name
    bad = VoiceResponse()
    bad.append(Dial(recording_track="sideways"))     # a value Twilio refuses is still an error
    import pytest
    from verbs import XMLError
    with pytest.raises(XMLError, match="recordingTrack"):
        parse_document(str(bad), "text/xml", api="twilio")
