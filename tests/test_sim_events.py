"""switch_sim.events: serialization and framing, byte for byte against the captured FreeSWITCH frames.

Each captured event frame is parsed back into (name, decoded value) headers + body, rebuilt as a
switch_sim Event, and framed again: the bytes must equal the capture (header order, URL encoding,
`_undef_`, Content-Length before Content-Type, inner Content-Length + body for CUSTOM events, and
the compact JSON of `text/event-json` frames)."""
import json

import pytest

from sim_support import event_headers, load_blocks, split_frame
from switch_sim.events import Event, EventFactory
from switch_sim.urlenc import url_decode


def _plain_frames(name):
    for direction, data in load_blocks(name):
        if direction.startswith('FS->') and data.startswith(b'Content-Length: ') \
                and b'Content-Type: text/event-plain' in data.split(b'\n\n', 1)[0]:
            yield data


def _rebuild_plain(data: bytes) -> Event:
    _outer, payload = split_frame(data)
    headers = event_headers(payload)
    ev = Event()
    for key, value in headers:
        if key == 'Content-Length':
            continue
        ev.add(key, '' if value == '_undef_' else url_decode(value))
    head, sep, rest = payload.partition(b'\n\n')
    inner_len = dict(headers).get('Content-Length')
    if inner_len is not None:
        ev.body = rest[:int(inner_len)].decode('utf-8')
        # the inner Content-Length is the last header line; it is emitted by the serializer itself
        ev.headers = [(k, v) for k, v in ev.headers]
    return ev


@pytest.mark.parametrize('capture', ['outbound-esl-transcript.txt', 'record-session-transcript.txt',
                                     'inbound-esl-transcript-jambonz.jsonl', 'inbound-esl-transcript.jsonl'])
def test_plain_frames_are_byte_identical(capture):
    frames = list(_plain_frames(capture))
    assert len(frames) > 10
    with_body = 0
    for data in frames:
        ev = _rebuild_plain(data)
        with_body += ev.body is not None
        assert ev.frame('plain') == data
    if 'inbound' in capture:
        assert with_body > 0          # CUSTOM mod_audio_fork events with JSON bodies


def test_json_frames_are_byte_identical():
    checked = 0
    for direction, data in load_blocks('inbound-esl-transcript-jambonz.jsonl'):
        if not direction.startswith('FS->') or b'Content-Type: text/event-json' not in data[:80]:
            continue
        _outer, payload = split_frame(data)
        pairs = json.loads(payload.decode('utf-8'), object_pairs_hook=lambda p: p)
        ev = Event()
        for key, value in pairs:
            if key == 'Content-Length':
                continue
            if key == '_body':
                ev.body = value
            else:
                ev.add(key, value)
        assert ev.frame('json') == data
        checked += 1
    assert checked >= 3


def test_custom_event_puts_subclass_first_and_empty_values_are_undef():
    factory = EventFactory('core', hostname='h')
    ev = factory.new('CUSTOM', subclass='mod_audio_fork::connect')
    ev.add('Empty', '')
    ev.body = '{"a":1}'
    text = ev.frame('plain').decode()
    head, _, payload = text.partition('\n\n')
    assert head == 'Content-Length: %d\nContent-Type: text/event-plain' % len(payload.encode())
    lines = payload.split('\n')
    assert lines[0] == 'Event-Subclass: mod_audio_fork%3A%3Aconnect'
    assert lines[1] == 'Event-Name: CUSTOM'
    assert 'Empty: _undef_' in lines
    assert payload.endswith('Content-Length: 7\n\n{"a":1}')


def test_standard_header_order_matches_capture():
    from sim_support import captured_events
    _name, captured = captured_events('outbound-esl-transcript.txt')[0]
    expected = [k for k, _ in captured[:13]]
    ev = EventFactory('core').new('CHANNEL_PARK')
    assert [k for k, _ in ev.headers] == expected
    assert dict(ev.headers)['Event-Calling-Function'] == dict(captured)['Event-Calling-Function']
