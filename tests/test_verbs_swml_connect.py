"""SWML connect to phone numbers and sip: URIs, as parsed (verbs/swml/connect_dial.py): the four
dialling forms, per-destination overrides, the dial plan they make, and what is refused (as an
error, or as not supported so `callfork validate` reports it). Running it: test_scenario_swml_connect.py."""
import json

import pytest

from verbs import NotSupportedError, SWMLError, parse_document, validate_source
from verbs.swml.connect_dial import ConnectDial


def connect(params):
    doc = parse_document(json.dumps({"version": "1.0.0", "sections": {"main": [{"connect": params}]}}),
                         "application/json")
    (verb,) = doc.verbs
    return verb


def refused(params, cls=SWMLError):
    with pytest.raises(cls) as info:
        connect(params)
    return info.value


class _Config:
    class freeswitch:
        originate_dialstring = "loopback/{to}/default"
        sip_dialstring = "sofia/internal/{uri}"


class _Call:
    uuid = "a-leg"
    from_number = "15550000000"
    config = _Config


def test_connect_to_one_number_with_the_documented_defaults():
    verb = connect({"to": "+15551231234", "from": "+15553214321"})
    assert isinstance(verb, ConnectDial) and verb.name == "connect"
    plan, destinations = verb.plan()
    assert [(t.kind, t.address, t.group, t.timeout_s, t.caller_id) for t in plan.targets] == [
        ("number", "+15551231234", 0, 60, "+15553214321")]
    assert plan.time_limit_s == 14400 and plan.header_prefix == "" and verb.answer_on_bridge is False
    assert destinations[0].call_state_events == ("ended",) and destinations[0].call_state_url is None


def test_parallel_serial_and_serial_parallel_make_groups():
    par = connect({"parallel": [{"to": "+15551231234"}, {"to": "sip:bob@example.com"}]})
    assert [(t.kind, t.group) for t in par.plan()[0].targets] == [("number", 0), ("sip", 0)]
    ser = connect({"timeout": 20, "serial": [{"to": "sip:alice@example.com", "from": "sip:chris@example.com"},
                                              {"to": "+15551231234", "timeout": 5}]})
    targets = ser.plan()[0].targets
    assert [(t.address, t.group, t.timeout_s, t.caller_id) for t in targets] == [
        ("sip:alice@example.com", 0, 20, "sip:chris@example.com"), ("+15551231234", 1, 5, None)]
    sp = connect({"serial_parallel": [[{"to": "+111"}, {"to": "+222"}], [{"to": "+333"}]]})
    assert [(t.address, t.group) for t in sp.plan()[0].targets] == [("+111", 0), ("+222", 0), ("+333", 1)]


def test_serial_dial_string_separates_groups_with_a_pipe():
    from verbs.dialing import Dialer
    verb = connect({"serial_parallel": [[{"to": "+111"}, {"to": "+222"}], [{"to": "+333", "timeout": 7}]]})
    dialer = Dialer(_Call, verb.plan()[0])
    text = dialer.dial_string()
    first, second = text.split("|")
    assert first.count("loopback/") == 2 and "loopback/+111/default" in first and "loopback/+222/default" in first
    assert "leg_timeout=7" in second and second.endswith("loopback/+333/default")
    assert dialer.serial is True


def test_per_destination_call_state_settings_override_the_method_ones():
    verb = connect({"call_state_url": "https://a.example/cs", "call_state_events": ["created", "ended"],
                    "parallel": [{"to": "+111"}, {"to": "+222", "call_state_url": "https://b.example/cs",
                                                   "call_state_events": ["answered"]}]})
    first, second = verb.plan()[1]
    assert (first.call_state_url, first.call_state_events) == ("https://a.example/cs", ("created", "ended"))
    assert (second.call_state_url, second.call_state_events) == ("https://b.example/cs", ("answered",))


def test_headers_go_to_sip_destinations_only_with_their_own_names():
    verb = connect({"parallel": [{"to": "sip:a@example.com"}, {"to": "+111"}],
                    "headers": [{"name": "x-FROM_NUMBER", "value": "+2B123456789"}]})
    sip, phone = verb.plan()[0].targets
    assert sip.sip_headers == {"x-FROM_NUMBER": "+2B123456789"} and phone.sip_headers == {}
    from verbs.dialing import Dialer
    assert "sip_h_x-FROM_NUMBER=+2B123456789" in Dialer(_Call, verb.plan()[0]).dial_string()


def test_ringback_takes_one_file_url():
    assert connect({"to": "+111", "ringback": ["https://a.example/ring.wav"]}).ringback == "https://a.example/ring.wav"


@pytest.mark.parametrize("params, words", [
    ({}, "give one of to, serial, parallel or serial_parallel"),
    ({"to": "+111", "serial": [{"to": "+222"}]}, "give only one of"),
    ({"serial": [{"to": "+222"}], "parallel": [{"to": "+333"}]}, "serial and parallel"),
    ({"to": "alice"}, "is not a phone number"),
    ({"to": 15551231234}, "must be a phone number or a sip: URI, not a number"),
    ({"to": "sip:a b@example.com"}, "is not a SIP URI"),
    ({"to": "sip:a,b@example.com"}, "is not a SIP URI"),
    ({"serial": []}, "non-empty array"),
    ({"serial": [{"from": "+1"}]}, "[0].to is required"),
    ({"parallel": [{"to": "+111", "colour": "red"}]}, "unknown destination parameter 'colour'"),
    ({"serial_parallel": [{"to": "+111"}]}, "[0] must be a non-empty array"),
    ({"parallel": [{"to": "stream:wss://a.example/b"}]}, "a stream is connected with connect"),
    ({"to": "+111", "timeout": 0}, "timeout"),
    ({"to": "+111", "call_state_events": ["hangup"]}, "unknown call state event 'hangup'"),
    ({"to": "+111", "call_state_url": "ftp://a.example/x"}, "call_state_url"),
    ({"to": "+111", "headers": [{"name": "X A", "value": "1"}]}, "not a SIP header name"),
    ({"to": "+111", "headers": {"X-A": "1"}}, "array of {name, value}"),
    ({"to": "+111", "from": "a,b"}, "from"),
    ({"to": "+111", "answer_on_bridge": "maybe"}, "answer_on_bridge"),
])
def test_bad_connect_parameters_are_errors(params, words):
    err = refused(params)
    assert not isinstance(err, NotSupportedError), err
    assert words in str(err), str(err)


@pytest.mark.parametrize("params, words", [
    ({"to": "/public/test_room"}, "use a phone number or a sip: URI"),
    ({"to": "+111", "result": {"variable": "connect_result", "case": {}}}, "connect result"),
    ({"to": "+111", "confirm": "https://a.example/confirm"}, "confirm"),
    ({"to": "+111", "codecs": "PCMU"}, "codecs"),
    ({"to": "sip:a@example.com", "username": "u", "password": "p"}, "username/password"),
    ({"serial": [{"to": "sip:a@example.com", "codecs": "PCMU"}]}, "[0].codecs"),
    ({"to": "+111", "ringback": ["say:ring ring"]}, "ringback"),
    ({"to": "+111", "ringback": ["https://a.example/1.wav", "https://a.example/2.wav"]}, "more than one URL"),
])
def test_documented_parameters_callfork_cannot_run_are_not_supported(params, words):
    err = refused(params, NotSupportedError)
    assert "not supported" in str(err) and words in str(err), str(err)


def test_validate_reports_a_not_supported_connect_with_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("version: 1.0.0\nsections:\n  main:\n    - answer: {}\n    - connect:\n"
                    "        to: '+15551231234'\n        confirm: https://a.example/c\n")
    code, text = validate_source(str(path))
    assert code == 1 and "line 5:" in text and "confirm" in text and "not supported" in text
    path.write_text("version: 1.0.0\nsections:\n  main:\n    - connect:\n        serial:\n"
                    "          - to: '+15551231234'\n          - to: sip:bob@example.com\n    - hangup: {}\n")
    code, text = validate_source(str(path))
    assert code == 0, text


def test_switch_on_a_method_output_parses_its_cases_methods():
    doc = parse_document(json.dumps({"sections": {"main": [{"switch": {
        "variable": "vars.connect_result",
        "case": {"connected": [{"hangup": {}}], "failed": [{"play": {"url": "silence:1"}}, "hangup"]},
        "default": [{"hangup": {"reason": "busy"}}]}}]}}), "application/json")
    (verb,) = doc.verbs
    assert verb.variable == "connect_result"
    assert {k: [v.name for v in vs] for k, vs in verb.case_verbs.items()} == {
        "connected": ["hangup"], "failed": ["play", "hangup"]}
    assert [v.name for v in verb.default_verbs] == ["hangup"] and verb.default_verbs[0].reason == "busy"


@pytest.mark.parametrize("params, cls, words", [
    ({"case": {}}, SWMLError, "variable is required"),
    ({"variable": "call.type", "case": {}}, NotSupportedError, "only method outputs"),
    ({"variable": "connect_result", "case": {"connected": [{"hangup": {"reason": "x"}}]}}, SWMLError,
     "case 'connected'[0]: reason"),
    ({"variable": "connect_result", "default": [{"nope": {}}]}, SWMLError, "default[0]: unknown SWML method nope"),
    ({"variable": "connect_result", "case": {"x": {"hangup": {}}}}, SWMLError, "must be an array of methods"),
])
def test_bad_switches_are_refused(params, cls, words):
    with pytest.raises(cls) as info:
        parse_document(json.dumps({"sections": {"main": [{"switch": params}]}}), "application/json")
    assert words in str(info.value), str(info.value)
