"""`text/event-json` events (what callfork subscribes to) give the same ESLEvent as `text/event-plain`.

The json frames are built the way FreeSWITCH builds them (esl_capture_tools.cjson_event:
switch_event_serialize_json_obj + cJSON_PrintUnformatted), and that serializer is first checked
byte for byte against the `text/event-json` frames a real FreeSWITCH sent (both inbound
transcripts). Then every captured plain event is turned into its json frame and both are parsed:
headers (plain values are URL-encoded, json ones are not), bodies (json: `_body` + a
`Content-Length` key), CUSTOM subclasses, repeated headers, array headers (plain `ARRAY::a|:b`, json
an array), non-ASCII and escapes must read the same."""
import random

import pytest

from esl_app import ESLParser
from esl_capture_tools import (CAPTURES, as_json_frame, is_event_frame, json_event_fields, json_event_frame,
                               load_blocks, plain_event_fields, plain_event_frame)
from switch_sim.events import Event

JSON_CAPTURES = ['inbound-esl-transcript.jsonl', 'inbound-esl-transcript-jambonz.jsonl']
PLAIN_CAPTURES = ['outbound-esl-transcript.txt', 'record-session-transcript.txt',
                  'inbound-esl-server-messages-transcript-jambonz.txt',
                  'inbound-esl-server-messages-transcript-drachtio.txt', 'inbound-esl-transcript.jsonl']


def fs_frames(name, fmt):
    return [b.data for b in load_blocks(CAPTURES / name) if b.from_fs and is_event_frame(b.data, fmt)]


def parse_one(frame):
    events = ESLParser().feed(frame)
    assert len(events) == 1
    return events[0]


def assert_same_view(plain, as_json):
    assert plain.content_type == 'text/event-plain' and as_json.content_type == 'text/event-json'
    assert plain.parse_error is None and as_json.parse_error is None
    assert list(as_json.headers.items()) == list(plain.headers.items())    # same values, same order
    assert (as_json.name, as_json.subclass) == (plain.name, plain.subclass)
    assert as_json.body == plain.body and as_json.raw_body == plain.raw_body
    assert as_json.json() == plain.json()


@pytest.mark.parametrize('capture', JSON_CAPTURES)
def test_the_json_serializer_matches_freeswitch_byte_for_byte(capture):
    frames = fs_frames(capture, 'json')
    assert len(frames) >= 4
    for data in frames:
        pairs, body = json_event_fields(data)
        assert json_event_frame(pairs, body) == data
        # the simulator's serializer agrees (no array headers in these events)
        assert Event(pairs, body).frame('json') == data
    names = [parse_one(f).name for f in frames]
    assert 'CHANNEL_HANGUP_COMPLETE' in names and 'CUSTOM' in names


@pytest.mark.parametrize('capture', PLAIN_CAPTURES)
def test_every_captured_plain_event_reads_the_same_as_json(capture):
    frames = fs_frames(capture, 'plain')
    assert len(frames) >= 10
    arrays = bodies = repeats = 0
    for data in frames:
        pairs, body = plain_event_fields(data)
        assert plain_event_frame(pairs, body) == data          # the plain side is FreeSWITCH's bytes
        as_json = as_json_frame(data)
        assert as_json.startswith(b'Content-Length: ') and is_event_frame(as_json, 'json')
        assert_same_view(parse_one(data), parse_one(as_json))
        arrays += any(isinstance(v, list) for _n, v in pairs)
        bodies += body is not None
        repeats += len({n for n, _v in pairs}) < len(pairs)
    if capture.startswith('outbound'):
        assert arrays and repeats            # variable_DP_MATCH; Hangup-Cause twice on hangup events
    if 'server-messages' in capture:
        assert bodies                        # mod_audio_fork::* CUSTOM events with JSON bodies


def test_a_call_of_json_frames_parses_whole_and_in_random_chunks():
    stream = b''.join(as_json_frame(b.data) for b in load_blocks(CAPTURES / 'outbound-esl-transcript.txt')
                      if b.from_fs)
    whole = ESLParser().feed(stream)
    assert sum(e.content_type == 'text/event-json' for e in whole) >= 40
    for seed in range(3):
        rng = random.Random(seed)
        parser = ESLParser()
        events = []
        pos = 0
        while pos < len(stream):
            size = rng.choice((1, 2, 7, 64, 500, 4096))
            events += parser.feed(stream[pos:pos + size])
            pos += size
        assert parser.buffered == 0
        def view(evs):
            return [(e.content_type, e.headers, e.body) for e in evs]
        assert view(events) == view(whole)


def _execute_complete():
    frame = [f for f in fs_frames('outbound-esl-transcript.txt', 'plain') if b'CHANNEL_EXECUTE_COMPLETE' in f][0]
    pairs, _body = plain_event_fields(frame)
    return pairs


def test_array_headers_read_as_plain_shows_them():
    pairs = _execute_complete() + [('variable_three', ['a', '', 'c']), ('variable_one', ['only']),
                                   ('variable_uuids', ['x|y', 'z'])]
    plain = parse_one(plain_event_frame(pairs))
    as_json = parse_one(json_event_frame(pairs))
    assert b'"variable_three":["a","","c"]' in json_event_frame(pairs)        # really an array on the wire
    assert_same_view(plain, as_json)
    assert as_json.get('variable_DP_MATCH') == 'ARRAY::stream1|:1'
    assert as_json.get('variable_three') == 'ARRAY::a|:|:c'
    assert as_json.get('variable_one') == 'only'         # one element: FreeSWITCH's value has no prefix
    assert as_json.get('variable_uuids') == 'ARRAY::x|y|:z'


def test_non_ascii_escapes_and_bodies_read_the_same():
    text = 'Grüße, 日本 "quoted" back\\slash\nnew line\ttab ${x} a+b 100% /path?q=1&r=2'
    body = '{"type":"transcription","text":"Grüße \\"hi\\"\\n"}'
    pairs = [('Event-Subclass', 'mod_audio_fork::transcription'), ('Event-Name', 'CUSTOM')] + \
        _execute_complete()[1:] + [('variable_note', text)]
    plain = parse_one(plain_event_frame(pairs, body))
    as_json = parse_one(json_event_frame(pairs, body))
    assert_same_view(plain, as_json)
    assert as_json.get('variable_note') == text
    assert as_json.subclass == 'mod_audio_fork::transcription' and as_json.name == 'CUSTOM'
    assert as_json.json() == {'type': 'transcription', 'text': 'Grüße "hi"\n'}
    assert as_json.get('Content-Length') == str(len(body.encode('utf-8')))
    assert '_body' not in as_json.headers


def test_what_plain_loses_json_keeps():
    """switch_url_encode passes an existing %XX through, so plain decodes it: json has the truth."""
    pairs = _execute_complete() + [('variable_url', 'http://app/x?name=a%20b')]
    assert parse_one(plain_event_frame(pairs)).get('variable_url') == 'http://app/x?name=a b'
    assert parse_one(json_event_frame(pairs)).get('variable_url') == 'http://app/x?name=a%20b'


def test_repeated_headers_first_wins_and_an_empty_json_body_is_no_body():
    pairs = _execute_complete() + [('Hangup-Cause', 'NORMAL_CLEARING'), ('Hangup-Cause', 'USER_BUSY')]
    plain = parse_one(plain_event_frame(pairs, ''))
    as_json = parse_one(json_event_frame(pairs, ''))      # json writes "Content-Length":"0","_body":""
    assert b'"_body":""' in json_event_frame(pairs, '')
    assert_same_view(plain, as_json)
    assert as_json.get('Hangup-Cause') == 'NORMAL_CLEARING'
    assert as_json.body is None and 'Content-Length' not in as_json.headers


def test_json_values_freeswitch_never_sends_do_not_break_the_event():
    frame = json_event_frame([('Event-Name', 'CUSTOM'), ('Event-Subclass', 'x::y')])
    frame = frame.replace(b'"x::y"}', b'"x::y","n":5,"o":{"a":[1]},"z":null,"e":[]}')
    frame = b'Content-Length: %d' % (len(frame.split(b'\n\n', 1)[1])) + frame[frame.index(b'\n'):]
    event = parse_one(frame)
    assert event.parse_error is None and event.subclass == 'x::y'
    assert (event.get('n'), event.get('o'), event.get('z'), event.get('e')) == ('5', '{"a": [1]}', 'null', '')
