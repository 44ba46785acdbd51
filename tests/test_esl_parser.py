"""ESLParser against every FreeSWITCH capture (FS -> client direction): fed whole, split at every
byte boundary (a representative subset), byte by byte, and in random chunks. Expected frames are
computed per captured block (each block is one frame on the wire) or read off the references."""
import json
import random

import pytest

from esl_app import ESLParser
from esl_capture_tools import CAPTURES, expected_frame, load_blocks

TXT_CAPTURES = sorted(p.name for p in CAPTURES.glob('*-transcript*.txt'))
JSONL_CAPTURES = sorted(p.name for p in CAPTURES.glob('*.jsonl'))
ALL_CAPTURES = TXT_CAPTURES + JSONL_CAPTURES
DISCONNECT_BODY = 'Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n'   # reference §2.8


def fs_frames(name):
    return [b.data for b in load_blocks(CAPTURES / name) if b.from_fs]


def assert_matches(events, frames):
    assert len(events) == len(frames)
    for event, frame in zip(events, frames):
        expected = expected_frame(frame)
        assert event.content_type == expected['content_type']
        assert event.parse_error is None
        for key, value in expected['headers'].items():
            assert event.headers[key] == value, key
        assert len(event.headers) == len(expected['headers'])
        if expected['body'] is None:
            assert event.raw_body is None
        else:
            assert event.raw_body == expected['body']
            assert event.body == expected['body'].decode('utf-8')


def feed_chunks(data, sizes):
    parser = ESLParser()
    events = []
    pos = 0
    for size in sizes:
        events += parser.feed(data[pos:pos + size])
        pos += size
    events += parser.feed(data[pos:])
    assert parser.buffered == 0
    return events


@pytest.mark.parametrize('name', ALL_CAPTURES)
def test_capture_fed_whole(name):
    frames = fs_frames(name)
    assert frames, name
    assert_matches(ESLParser().feed(b''.join(frames)), frames)


@pytest.mark.parametrize('name', ALL_CAPTURES)
def test_capture_random_chunks(name):
    frames = fs_frames(name)
    data = b''.join(frames)
    for seed in range(3):
        rng = random.Random(seed)
        sizes = []
        total = 0
        while total < len(data):
            size = rng.choice((1, 2, 3, 7, 64, 500, 1500, 4096, 9000))
            sizes.append(size)
            total += size
        assert_matches(feed_chunks(data, sizes), frames)


def _representative_frames():
    """connect reply, command replies, an event with a JSON body, api/response, a json event,
    the linger and the final disconnect notices."""
    out = fs_frames('outbound-esl-transcript.txt')[:3]        # connect reply + 2 command/reply
    inbound = fs_frames('inbound-esl-transcript.jsonl')
    failed = [f for f in inbound if b'mod_audio_fork%3A%3Aconnect_failed' in f][0]
    api = [f for f in inbound if f.startswith(b'Content-Type: api/response')][0]
    ev_json = [f for f in inbound if b'text/event-json' in f[:60]][0]
    outbound = fs_frames('outbound-esl-transcript.txt')
    notices = [f for f in outbound if b'text/disconnect-notice' in f]
    return out + [failed, api, ev_json] + notices


def test_every_split_point_of_representative_frames():
    frames = _representative_frames()
    # each frame followed by the next one, cut at every byte (O(n^2) per pair, not per stream)
    for first, second in zip(frames, frames[1:] + frames[:1]):
        pair = [first, second]
        data = first + second
        expected = [expected_frame(f) for f in pair]
        for cut in range(len(data) + 1):
            parser = ESLParser()
            events = parser.feed(data[:cut]) + parser.feed(data[cut:])
            assert len(events) == 2, cut
            for event, exp in zip(events, expected):
                assert event.content_type == exp['content_type']
                assert event.raw_body == exp['body']
                assert event.name == exp['headers'].get('Event-Name')
    data = b''.join(frames)
    assert_matches(feed_chunks(data, [1] * len(data)), frames)      # byte by byte


def test_known_values_from_the_captures():
    inbound = ESLParser().feed(b''.join(fs_frames('inbound-esl-transcript.jsonl')))
    failed = [e for e in inbound if e.subclass == 'mod_audio_fork::connect_failed']
    assert failed and failed[0].name == 'CUSTOM'
    assert failed[0].body == '{"reason":"Unable to connect"}'
    assert failed[0].json() == {'reason': 'Unable to connect'}
    final = inbound[-1]
    assert final.content_type == 'text/disconnect-notice'
    assert final.raw_body == DISCONNECT_BODY.encode() and len(final.raw_body) == 67
    # api/response bodies: exactly Content-Length bytes, no trailing newline guaranteed
    for event in inbound:
        if event.content_type == 'api/response':
            assert len(event.raw_body) == int(event.outer_headers['Content-Length'])
    json_events = [e for e in inbound if e.content_type == 'text/event-json']
    assert json_events and all(e.name for e in json_events)

    outbound = ESLParser().feed(b''.join(fs_frames('outbound-esl-transcript.txt')))
    connect = outbound[0]
    assert connect.content_type == 'command/reply'
    assert connect.name == 'CHANNEL_DATA'
    assert connect.reply_text == '+OK\n'                       # Reply-Text: %2BOK%0A
    assert connect.get('Caller-Destination-Number') == 'stream1'
    assert connect.get('variable_current_application_data') == '127.0.0.1:8084 async full'
    api = [e for e in outbound if e.content_type == 'api/response'][0]
    assert api.body == '+OK 8e337ab9-a93d-4c1b-8b71-3388d274f697 sent DTMF 1234.\n'
    linger = [e for e in outbound if e.outer_headers.get('Content-Disposition') == 'linger'][0]
    assert linger.get('Linger-Time') == '-1' and linger.body == ''
    playback_done = [e for e in outbound if e.name == 'CHANNEL_EXECUTE_COMPLETE' and e.get('Application') == 'playback']
    assert playback_done[0].get('Application-Response') == 'FILE PLAYED'
    hangup_complete = [e for e in outbound if e.name == 'CHANNEL_HANGUP_COMPLETE'][0]
    assert hangup_complete.get('Hangup-Cause') == 'NORMAL_CLEARING'     # present twice: first wins


def test_server_message_events_carry_their_json_bodies():
    frames = fs_frames('inbound-esl-server-messages-transcript-jambonz.txt')
    events = ESLParser().feed(b''.join(frames))
    with_body = [e for e in events if e.subclass and e.subclass.startswith('mod_audio_fork::') and e.body]
    assert with_body
    for event, frame in ((e, f) for e, f in zip(events, frames) if e in with_body):
        # the body is the tail of the frame, exactly inner Content-Length bytes, and JSON
        length = int(event.headers['Content-Length'])
        assert frame.endswith(event.raw_body) and len(event.raw_body) == length
        assert isinstance(event.json(), dict)
        assert ': ' not in ''.join(k for k in event.headers if k.startswith('{'))   # no bogus header


def test_event_json_body_and_xml():
    body = 'line1\n+OK done'
    obj = {'Event-Name': 'BACKGROUND_JOB', 'Job-UUID': 'abc', 'Content-Length': str(len(body)), '_body': body}
    payload = json.dumps(obj).encode()
    frame = b'Content-Length: %d\nContent-Type: text/event-json\n\n' % len(payload) + payload
    event = ESLParser().feed(frame)[0]
    assert event.name == 'BACKGROUND_JOB' and event.body == body and '_body' not in event.headers
    xml = (b'<event><headers><Event-Name>CUSTOM</Event-Name><Event-Subclass>mod_audio_fork%3A%3Ajson</Event-Subclass>'
           b'</headers><Content-Length>7</Content-Length><body>{"a":1}</body></event>')
    frame = b'Content-Length: %d\nContent-Type: text/event-xml\n\n' % len(xml) + xml
    event = ESLParser().feed(frame)[0]
    assert event.subclass == 'mod_audio_fork::json' and event.json() == {'a': 1}


def test_bad_input_is_typed_not_a_crash():
    from esl_app import ESLError
    with pytest.raises(ESLError):
        ESLParser().feed(b'Content-Type: api/response\nContent-Length: nope\n\n')
    with pytest.raises(ESLError):
        ESLParser().feed(b'Content-Type: api/response\nContent-Length: 99999999999\n\n')
    event = ESLParser().feed(b'Content-Length: 5\nContent-Type: text/event-json\n\n{nop}')[0]
    assert event.parse_error and event.headers == {}
    # leading blank lines and a header line without a colon are tolerated
    event = ESLParser().feed(b'\n\nContent-Type: command/reply\ngarbage\nReply-Text: +OK\n\n')[0]
    assert event.reply_text == '+OK'
