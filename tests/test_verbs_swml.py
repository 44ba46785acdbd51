"""SWML documents (SignalWire's SWML docs: github.com/signalwire/docs, fern/products/swml): shape, methods, parameters, errors with positions."""
import json
from pathlib import Path

import pytest

from verbs import DocumentError, NotSupportedError, SWMLError, parse_document

FIXTURES = Path(__file__).parent / "fixtures" / "verbs"


def swml(doc, content_type="application/json", **opts):
    body = json.dumps(doc) if isinstance(doc, dict) else doc
    return parse_document(body, content_type, **opts)


def main(*steps, **opts):
    return swml({"version": "1.0.0", "sections": {"main": list(steps)}}, **opts).verbs


def step(method, params):
    (verb,) = main({method: params})
    return verb


def swml_error(doc, content_type="application/json", cls=SWMLError, **opts):
    with pytest.raises(cls) as info:
        swml(doc, content_type, **opts)
    return info.value


def check_reference_document(doc):
    assert doc.kind == "swml" and list(doc.sections) == ["main"] and doc.verbs is doc.sections["main"]
    answer, stream, play, stop_stream, hangup = doc.verbs
    assert [v.name for v in doc.verbs] == ["answer", "stream", "play", "stop_stream", "hangup"]
    assert stream.url == "wss://example.com/audio-stream" and stream.stream_name == "live-transcription"
    assert stream.track == "both_tracks" and stream.status_url == "https://example.com/stream-status"
    assert stream.custom_parameters == {"customer_tier": "gold"}
    assert stream.status_url_method == "POST" and stream.control_id is None
    return answer, stream, play, stop_stream, hangup


def test_reference_yaml_document():
    doc = parse_document((FIXTURES / "swml_ref_1_1.yaml").read_bytes(), "application/yaml")
    answer, stream, play, stop_stream, hangup = check_reference_document(doc)
    (item,) = play.items
    assert (item.kind, item.text) == ("say", "Hello, thanks for calling.")
    assert stop_stream.control_id is None and hangup.reason == "hangup"
    # positions from the YAML source: "    - stream:" is line 5, column 7
    assert (answer.line, stream.line, play.line, stop_stream.line, hangup.line) == (4, 5, 12, 14, 15)
    assert stream.column == 7


def test_reference_json_document_has_line_numbers():
    doc = parse_document((FIXTURES / "swml_ref_1_1.json").read_bytes(), "application/json")
    answer, stream, play, *_ = check_reference_document(doc)
    assert (answer.line, stream.line, play.line) == (3, 4, 7)


def test_signalwire_swml_builder_output():
    doc = parse_document((FIXTURES / "swml_signalwire_swml_2_7.json").read_bytes(), "application/json")
    stream = doc.verbs[1]
    assert (stream.codec_name, stream.encoding, stream.sample_rate) == ("PCMU@8000h", "mulaw", 8000)
    assert stream.authorization_bearer_token == "secret"
    assert doc.verbs[2].items[0].text == "Hello"


def test_signalwire_agents_output_with_scalar_sleep():
    doc = parse_document((FIXTURES / "swml_signalwire_agents_1_1.json").read_bytes(), "application/json")
    assert [v.name for v in doc.verbs] == ["answer", "stream", "play", "sleep", "hangup"]
    assert doc.verbs[3].duration == 5000


def test_bare_string_steps():
    verbs = main("answer", {"play": {"url": "silence:1.5"}}, "hangup")
    assert [v.name for v in verbs] == ["answer", "play", "hangup"]
    assert verbs[0].max_duration == 14400 and verbs[2].reason == "hangup"


def test_version_is_optional_but_must_be_1_0_0():
    assert swml({"sections": {"main": ["answer"]}}).verbs[0].name == "answer"
    err = swml_error({"version": "2.0.0", "sections": {"main": ["answer"]}})
    assert "1.0.0" in err.message and err.line == 1


def test_missing_main_and_missing_sections():
    err = swml_error({"version": "1.0.0", "sections": {"other": ["answer"]}})
    assert "main" in err.message
    assert "sections" in swml_error({"version": "1.0.0"}).message
    assert "sections" in swml_error({"sections": ["answer"]}).message


def test_other_sections_are_parsed_too():
    doc = swml({"sections": {"main": ["answer"], "sub": [{"hangup": {"reason": "busy"}}]}})
    assert doc.sections["sub"][0].reason == "busy"
    err = swml_error({"sections": {"main": ["answer"], "sub": [{"hangup": {"reason": "rude"}}]}})
    assert (err.section, err.index, err.element) == ("sub", 0, "hangup")


def test_unknown_method_names_it():
    err = swml_error({"sections": {"main": ["answer", {"dance": {}}]}})
    assert (err.element, err.section, err.index) == ("dance", "main", 1)
    assert "unknown SWML method dance" in err.message and "stream" in err.message
    assert str(err).startswith(f"line {err.line}:{err.column}: <dance>: sections.main[1]: ")


def test_step_with_two_keys_or_wrong_type():
    err = swml_error({"sections": {"main": [{"answer": {}, "hangup": {}}]}})
    assert "exactly one key" in err.message and err.index == 0
    err = swml_error({"sections": {"main": [42]}})
    assert "exactly one key" in err.message


def test_errors_carry_yaml_line_numbers_and_all_are_collected():
    text = ("version: 1.0.0\n"
            "sections:\n"
            "  main:\n"
            "    - answer: {}\n"
            "    - hangup:\n"
            "        reason: nope\n"
            "    - stream:\n"
            "        url: https://example.com/x\n"
            "    - frobnicate: {}\n")
    err = swml_error(text, "application/yaml")
    assert [(e.line, e.element, e.location) for e in err.errors] == [
        (5, "hangup", "sections.main[1]"), (7, "stream", "sections.main[2]"), (9, "frobnicate", "sections.main[3]")]
    assert all(e.column == 7 for e in err.errors)
    assert "hangup" in err.errors[0].message and "busy" in err.errors[0].message and "decline" in err.errors[0].message


def test_malformed_json_and_yaml_have_positions():
    err = swml_error('{"sections": {"main": [\n  {"answer": {}},\n  ]}}')
    assert err.line == 3 and "malformed JSON" in err.message
    err = swml_error("sections:\n  main:\n    - answer: {\n", "application/yaml")
    assert err.line >= 3 and "malformed YAML" in err.message


def test_yaml_aliases_and_python_tags_are_refused():
    err = swml_error("sections:\n  main: &m\n    - answer: {}\n  other: *m\n", "application/yaml")
    assert "aliases" in err.message and err.line == 2
    err = swml_error("sections: !!python/object/apply:os.system ['true']\n", "application/yaml")
    assert "malformed YAML" in err.message


def test_deeply_nested_json_is_an_error():
    err = swml_error('{"sections": {"main": [' + "[" * 50000 + "]" * 50000 + "]}}")
    assert "nested too deeply" in err.message or "limit" in err.message


@pytest.mark.parametrize("body", [
    "sections:\n  main: " + "[" * 20000 + "]" * 20000 + "\n",
    "sections:\n  main:\n    " + "- " * 40000 + "answer\n",
    "- " * 40000 + "x\n",
    "? " * 40000 + "x\n",
    '{"sections": {"main": [' + "{\"a\": " * 9000 + "1" + "}" * 9000 + "]}}",
])
def test_deep_yaml_and_json_are_refused_fast(body):
    import time
    start = time.monotonic()
    err = swml_error(body, "application/json" if body.startswith("{") else "application/yaml")
    assert time.monotonic() - start < 1.0
    assert "nested too deeply" in err.message and err.line >= 1


def test_brackets_inside_strings_and_comments_do_not_count_as_nesting():
    text = ("sections:\n  main:   # [[[[ " + "[" * 100 + "\n"
            "    - play: {url: 'say:" + "[" * 100 + " it''s'}\n"
            '    - play: {url: "say:' + "{" * 100 + ' \\" x"}\n')
    doc = swml(text, "application/yaml")
    assert doc.verbs[0].items[0].text.startswith("[[[") and doc.verbs[1].items[0].text.startswith("{{{")


def test_not_a_document():
    assert "plain text" in swml_error("hello", "application/yaml").message
    assert "an array" in swml_error("[1, 2]").message
    assert "XML" in swml_error("<Response/>", "application/json").message


# ---- methods ----

def test_answer_parameters():
    answer = step("answer", {"max_duration": 60, "codecs": "PCMU,PCMA"})
    assert (answer.max_duration, answer.codecs) == (60, "PCMU,PCMA")
    assert "max_duration" in swml_error({"sections": {"main": [{"answer": {"max_duration": 0}}]}}).message


def test_play_url_grammar():
    play = step("play", {"urls": ["https://a.example/x.wav#f", "say:Hi there", "silence: 3.0", "ring:us",
                                   "ring:20.0:gb", "http://user:pw@a.example/y.mp3"]})
    kinds = [(i.kind, i.url, i.text, i.duration, i.country) for i in play.items]
    assert kinds == [("file", "https://a.example/x.wav", None, None, None), ("say", None, "Hi there", None, None),
                     ("silence", None, None, 3.0, None), ("ring", None, None, None, "us"),
                     ("ring", None, None, 20.0, "gb"), ("file", "http://user:pw@a.example/y.mp3", None, None, None)]
    assert (play.auto_answer, play.volume, play.say_voice, play.say_language, play.say_gender) == (
        True, 0.0, "Polly.Salli", "en-US", "female")
    play = step("play", {"url": "say:x", "volume": -40, "say_voice": "Polly.Amy", "auto_answer": False})
    assert (play.volume, play.say_voice, play.auto_answer) == (-40.0, "Polly.Amy", False)


@pytest.mark.parametrize("params,words", [
    ({}, ["url", "urls"]),
    ({"url": "say:a", "urls": ["say:b"]}, ["url", "urls"]),
    ({"url": "ftp://a/x"}, ["url"]),
    ({"url": "say:"}, ["say"]),
    ({"url": "silence:soon"}, ["silence"]),
    ({"url": "ring:usa"}, ["ring"]),
    ({"urls": []}, ["urls"]),
    ({"urls": ["say:a", 3]}, ["urls", "[1]"]),
    ({"url": "say:a", "volume": 41}, ["volume", "-40", "40"]),
    ({"url": "say:a", "auto_answer": "sometimes"}, ["auto_answer"]),
    ({"url": "say:a", "loop": 2}, ["loop", "url", "volume"]),
])
def test_play_errors(params, words):
    err = swml_error({"sections": {"main": [{"play": params}]}})
    for word in words:
        assert word in err.message, err.message


def test_sleep_forms():
    assert step("sleep", 2500).duration == 2500
    assert step("sleep", {"duration": 100}).duration == 100
    sleep = step("sleep", -1)
    assert sleep.forever
    for bad in (-5, "soon", {"duration": "x"}, {}, [1]):
        err = swml_error({"sections": {"main": [{"sleep": bad}]}})
        assert err.element == "sleep"


@pytest.mark.parametrize("reason", ["hangup", "busy", "decline"])
def test_hangup_reasons(reason):
    assert step("hangup", {"reason": reason}).reason == reason


def test_record_call_and_stop_record_call():
    rec = step("record_call", {})
    assert (rec.stereo, rec.format, rec.direction, rec.terminators, rec.beep, rec.input_sensitivity,
            rec.initial_timeout, rec.end_silence_timeout, rec.control_id) == (
        False, "wav", "both", "", False, 44.0, 0.0, 0.0, None)
    rec = step("record_call", {"control_id": "r1", "stereo": True, "format": "mp3", "direction": "speak",
                               "terminators": "#*", "beep": True, "max_length": 30,
                               "status_url": "https://a.example/rec"})
    assert (rec.control_id, rec.stereo, rec.format, rec.direction, rec.terminators, rec.max_length) == (
        "r1", True, "mp3", "speak", "#*", 30)
    assert step("stop_record_call", {"control_id": "r1"}).control_id == "r1"
    assert step("stop_record_call", {}).control_id is None
    err = swml_error({"sections": {"main": [{"record_call": {"format": "ogg", "direction": "up"}}]}})
    assert len(err.errors) == 2


def test_stream_defaults_and_codecs():
    stream = step("stream", {"url": "wss://a.example/s"})
    assert (stream.track, stream.status_url_method, stream.codec_name, stream.encoding, stream.sample_rate,
            stream.custom_parameters, stream.bidirectional) == (
        "inbound_track", "POST", "PCMU@8000h", "mulaw", 8000, {}, False)
    for codec, encoding, rate in [("PCMU", "mulaw", 8000), ("PCMU@8000h", "mulaw", 8000), ("L16", "l16", 16000),
                                  ("L16@8000h", "l16", 8000), ("L16@16000h", "l16", 16000),
                                  ("L16@24000h", "l16", 24000)]:
        stream = step("stream", {"url": "wss://a.example/s", "codec": codec})
        assert (stream.encoding, stream.sample_rate) == (encoding, rate), codec


@pytest.mark.parametrize("codec", ["PCMA", "OPUS", "G722", "opus@48000h"])
def test_stream_codecs_callfork_cannot_do_are_not_supported(codec):
    err = swml_error({"sections": {"main": [{"stream": {"url": "wss://a/s", "codec": codec}}]}},
                     cls=NotSupportedError)
    assert "not supported" in err.message and err.element == "stream"


def test_stream_custom_parameters_are_stringified():
    stream = step("stream", {"url": "wss://a/s", "custom_parameters": {"n": 5, "ok": True, "x": None, "s": "v"}})
    assert stream.custom_parameters == {"n": "5", "ok": "true", "x": "", "s": "v"}


def test_stream_ws_scheme_option():
    assert step("stream", {"url": "ws://127.0.0.1:8/s"}).url == "ws://127.0.0.1:8/s"
    err = swml_error({"sections": {"main": [{"stream": {"url": "ws://127.0.0.1:8/s"}}]}},
                     allow_insecure_ws=False)
    assert "wss://" in err.message
    doc = swml({"sections": {"main": [{"stream": {"url": "wss://a/s"}}]}}, allow_insecure_ws=False)
    assert doc.verbs[0].url == "wss://a/s"


@pytest.mark.parametrize("params,words", [
    ({}, ["url", "required"]),
    ({"url": "https://a/s"}, ["url", "wss://"]),
    ({"url": "wss://a/s", "track": "both"}, ["track", "inbound_track", "outbound_track", "both_tracks"]),
    ({"url": "wss://a/s", "status_url": "wss://a/cb"}, ["status_url"]),
    ({"url": "wss://a/s", "status_url_method": "PUT"}, ["status_url_method", "GET", "POST"]),
    ({"url": "wss://a/s", "custom_parameters": ["a"]}, ["custom_parameters"]),
    ({"url": "wss://a/s", "codec": "PCMU@16000h"}, ["codec"]),
    ({"url": "wss://a/s", "bidirectional": True}, ["bidirectional", "url", "track"]),
    ({"url": "${vars.ws}"}, ["url", "variables"]),
])
def test_stream_errors(params, words):
    err = swml_error({"sections": {"main": [{"stream": params}]}})
    for word in words:
        assert word in err.message, err.message


def test_stop_stream():
    assert step("stop_stream", {"control_id": "s1"}).control_id == "s1"
    assert step("stop_stream", None).control_id is None


def test_connect_to_stream_is_bidirectional():
    connect = step("connect", {"to": "stream:wss://a.example/bot", "codec": "L16@16000h", "name": "bot",
                               "status_url": "https://a.example/st", "authorization_bearer_token": "t",
                               "custom_parameters": {"k": 1}})
    assert (connect.url, connect.bidirectional, connect.sample_rate, connect.stream_name,
            connect.authorization_bearer_token, connect.custom_parameters) == (
        "wss://a.example/bot", True, 16000, "bot", "t", {"k": "1"})


@pytest.mark.parametrize("params", [{"to": "/public/test_room"}, {"to": "+15551234567", "codecs": "PCMU"},
                                    {"serial": [{"to": "+1555", "codecs": "PCMU"}]},
                                    {"to": "stream:wss://a/b", "timeout": 20}])
def test_connect_forms_callfork_cannot_run_are_not_supported(params):
    # connect to numbers and sip: URIs: tests/test_verbs_swml_connect.py
    err = swml_error({"sections": {"main": [{"connect": params}]}}, cls=NotSupportedError)
    assert "not supported" in err.message and err.element == "connect"


def test_connect_to_a_plain_ws_stream_url_errors():
    err = swml_error({"sections": {"main": [{"connect": {"to": "stream:https://a/b"}}]}})
    assert not isinstance(err, NotSupportedError) and "to" in err.message


UNSUPPORTED = ["set", "unset", "label", "goto", "execute", "return", "cond", "prompt",
               "record", "request", "tap", "stop_tap"]


@pytest.mark.parametrize("method", UNSUPPORTED)
def test_control_flow_methods_parse_but_do_not_run(method):
    value = {"set": {"a": 1}, "unset": "a", "label": "top", "return": 1, "cond": [{"when": "1", "then": []}]}.get(
        method, {})
    verb = step(method, value)
    assert verb.name == method and verb.params == value
    with pytest.raises(NotSupportedError, match=f"SWML method {method} is not supported by callfork yet"):
        verb.run(None)


def test_mixed_errors_raise_swml_error_listing_not_supported_ones_too():
    err = swml_error({"sections": {"main": [{"connect": {"to": "/public/room"}}, {"hangup": {"reason": "x"}}]}})
    assert type(err) is SWMLError and len(err.errors) == 2
    assert err.errors[0].not_supported and not err.errors[1].not_supported


def test_supported_methods_run_and_unsupported_ones_say_so():
    from verbs.base import Verb
    from verbs.swml import METHODS
    for name, cls in METHODS.items():
        assert cls.run is not Verb.run, f"{name} has no run()"   # executed in tests/test_scenario_swml_*.py
    verb = step("stream", {"url": "wss://a/s"})
    assert verb.stop() is None
    unsupported = parse_document({"sections": {"main": [{"goto": {"label": "x"}}]}}.__repr__().replace("'", '"'),
                                 "application/json").verbs[0]
    with pytest.raises(NotSupportedError, match="goto is not supported"):
        unsupported.run(None)


@pytest.mark.parametrize("body,content_type", [
    ('{"sections": {"main": [{"sleep": NaN}]}}', "application/json"),
    ('{"sections": {"main": [{"sleep": Infinity}]}}', "application/json"),
    ('{"sections": {"main": [{"sleep": ' + "9" * 5000 + "}]}}", "application/json"),
    ("sections:\n  main:\n    - sleep: " + "9" * 5000 + "\n", "application/yaml"),
    ("sections:\n  main:\n    - sleep: .inf\n", "application/yaml"),
    ("sections:\n  main:\n    - play: {url: 'say:x', volume: .nan}\n", "application/yaml"),
    ("sections:\n  main:\n    - play: {1: 2}\n", "application/yaml"),
    ("sections:\n  main:\n    - connect: {1: 2}\n", "application/yaml"),
    ("sections:\n  main: " + "[" * 20000 + "]" * 20000 + "\n", "application/yaml"),
    ("sections:\n  main:\n    - answer: {max_duration: 1e400}\n", "application/yaml"),
])
def test_odd_values_are_errors_not_crashes(body, content_type):
    with pytest.raises(DocumentError):
        parse_document(body, content_type)


def test_transfer_goes_to_a_section_or_a_url():
    doc = parse_document(json.dumps({"sections": {
        "main": [{"transfer": "next"}, {"transfer": {"dest": "https://a.example/swml", "params": {"x": 1}}}],
        "next": [{"hangup": {}}]}}), "application/json")
    first, second = doc.verbs
    assert first.dest == "next" and not first.is_url
    assert second.is_url and second.params_given == {"x": 1}


@pytest.mark.parametrize("dest, words", [("nowhere", "neither a section"), ("ftp://a/b", "neither a section"),
                                         ('{"sections": {}}', "inline"), ("relay:app", "relay"), (5, "section name")])
def test_transfer_refuses_what_it_cannot_reach(dest, words):
    with pytest.raises(DocumentError) as info:
        parse_document(json.dumps({"sections": {"main": [{"transfer": {"dest": dest}}]}}), "application/json")
    assert any(words in str(e) for e in info.value.errors), info.value.errors
