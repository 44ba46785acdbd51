"""uuid_audio_fork argument splitting and parsing, checked against the captured FreeSWITCH traffic."""
import json

import pytest

from switch_sim import audio_fork as af
from switch_sim.argsplit import separate_string

FLAVORS = ('drachtio', 'jambonz')


def results(captures_dir, flavor):
    return json.loads((captures_dir / ('audio-fork-results-%s.json' % flavor)).read_text())


def api_args(api: str) -> str:
    assert api.startswith('uuid_audio_fork')
    return api[len('uuid_audio_fork '):]


@pytest.mark.parametrize('flavor', FLAVORS)
def test_usage_lines_are_byte_exact(captures_dir, flavor):
    data = results(captures_dir, flavor)
    usage = {c['response'] for c in data['failure_cases'] if c['response'].startswith('-USAGE')}
    assert usage == {af.USAGE[flavor]}
    # and what mod_event_socket sent on the wire
    name = 'inbound-esl-transcript.jsonl' if flavor == 'drachtio' else 'inbound-esl-transcript-jambonz.jsonl'
    rows = [json.loads(line) for line in (captures_dir / name).read_text().splitlines()]
    wire = [r['data'].split('\n\n', 1)[1] for r in rows
            if r['dir'] == 'FS->CLIENT' and 'api/response' in r['data'] and '-USAGE' in r['data']]
    assert wire and all(w == af.USAGE[flavor] for w in wire)


@pytest.mark.parametrize('flavor', FLAVORS)
def test_replies_known_without_a_channel(captures_dir, flavor):
    for case in results(captures_dir, flavor)['failure_cases']:
        args = api_args(case['api']) if case['api'] != 'uuid_audio_fork' else ''
        cmd = af.parse_command(args, flavor)
        if case['response'].startswith('-USAGE'):
            assert cmd.reply == case['response'], case['case']
        else:
            assert cmd.reply is None, case['case']
        if case['response'] == '-ERR no reply\n':
            assert cmd.noreply, case['case']


@pytest.mark.parametrize('flavor', FLAVORS)
def test_metadata_quoting_matches_the_captured_text_frames(captures_dir, flavor):
    for case in results(captures_dir, flavor)['metadata_quoting']:
        start = af.parse_command(api_args(case['api']), flavor)
        frames = case['text_frames_received']
        assert start.action == 'start' and start.mix == 'mono' and start.rate == 8000
        if start.metadata is None:
            assert frames == [], case['case']
        else:
            assert frames[0] == start.metadata, case['case']
        stop = af.parse_command(api_args(case['stop_api']), flavor)
        assert stop.action == 'stop'
        # the stop names the bug the start created (else the capture's stop would have failed)
        assert stop.bugname == start.bugname, case['case']
        assert case['stop_response'] == '+OK Success\n'
        if len(frames) > 1:
            assert stop.text == frames[1]


def test_jambonz_unquoted_spaces_spill_into_the_bidirectional_slots():
    cmd = af.parse_command('u start ws://h/x mono 8k {"a": 1, "b": "x y"}', 'jambonz')
    assert (cmd.bugname, cmd.metadata) == ('{"a":', '1,')
    assert (cmd.bidi_enable, cmd.bidi_stream, cmd.bidi_rate) == (0, 0, 0)
    drachtio = af.parse_command('u start ws://h/x mono 8k {"a": 1, "b": "x y"}', 'drachtio')
    assert (drachtio.bugname, drachtio.metadata) == ('{"a":', '1, "b": "x y"}')


@pytest.mark.parametrize('flavor', FLAVORS)
def test_bidirectional_arguments(captures_dir, flavor):
    data = results(captures_dir, 'jambonz')
    apis = [s['api_start'] for s in data['scenarios'] if s['name'].startswith('D-')]
    assert apis
    for api in apis:
        cmd = af.parse_command(api_args(api), 'jambonz')
        tail = api.split()[-3:]
        assert cmd.bugname == 'audio_fork'
        assert cmd.metadata.startswith('{"scenario":')
        assert cmd.write_replace == (tail[0] == 'true' and tail[1] == 'true' and int(tail[2]) > 0)
        assert cmd.bidi_rate == int(tail[2])
    # the drachtio build has 7 slots: the tail folds into the metadata
    d = af.parse_command('u start ws://h/x mono 8k audio_fork {"s":1} true true 8000', 'drachtio')
    assert d.metadata == '{"s":1} true true 8000' and not d.write_replace
    # jambonz: empty bugname / metadata slots keep the defaults, only "true" is true
    j = af.parse_command("^^|u|start|ws://h/x|mono|16k|||1|true|16000", 'jambonz')
    assert (j.bugname, j.metadata, j.bidi_enable, j.bidi_stream, j.bidi_rate) == ('audio_fork', None, 0, 1, 16000)


def test_separate_string_rules():
    def sep(text, slots):
        return separate_string(text, max_parts=slots)
    assert sep('a b  c', 10) == ['a', 'b', 'c']
    assert sep("a 'b c' d", 10) == ['a', 'b c', 'd']
    assert sep('a b c d', 3) == ['a', 'b', 'c d']            # last slot keeps the rest
    assert sep("a b 'c d' e f", 3) == ['a', 'b', 'c d e f']   # ... with its quotes removed
    assert sep('^^|a|b c|d', 10) == ['a', 'b c', 'd']
    assert sep(r"a\ b c", 10) == [r'a\ b', 'c']              # an escaped space does not split
    assert sep(r"it\'s x", 10) == ["it's", 'x']
    assert sep(r'a\nb', 10) == ['a\nb']
    assert sep('  a   b  ', 10) == ['a', 'b']
    assert sep("a '' b", 10) == ['a', '', 'b']               # an empty argument (api-argsplit.json)
    assert sep('', 10) == []


def test_subcommands_and_bugnames():
    p = af.parse_command
    assert p('u stop', 'drachtio').bugname == 'audio_fork'
    s = p('u stop {"x":1}', 'drachtio')
    assert (s.bugname, s.text) == ('audio_fork', '{"x":1}')
    s = p('u stop mybug {"x":1}', 'jambonz')
    assert (s.bugname, s.text) == ('mybug', '{"x":1}')
    assert p('u pause b2', 'jambonz').bugname == 'b2'
    assert p('u send_text', 'jambonz').noreply
    t = p('u send_text mybug', 'jambonz')
    assert (t.bugname, t.text) == ('mybug', None)
    assert p('u frobnicate', 'jambonz').action == 'unsupported'
    assert p('u stop_play', 'drachtio').action == 'unsupported'
    assert p('u stop_play', 'jambonz').action == 'stop_play'
    assert p('u start ws://h/x mono', 'jambonz').noreply
    assert p('u start ws://h/x quad 8k', 'jambonz').noreply
    assert p('u start ws://h/x stereo 16000', 'jambonz').rate == 16000
    assert p('u start ws://h/x stereo 12000', 'jambonz').rate == 12000  # only logged by the module
    assert p('u start ws://h/x mono abc', 'jambonz').rate == 0


def test_parse_ws_uri():
    for flavor in FLAVORS:
        assert af.parse_ws_uri('ws://127.0.0.1:8090/a/b?token=x', flavor) == ('127.0.0.1', 8090, '/a/b?token=x', False)
        assert af.parse_ws_uri('wss://example.invalid/x', flavor) == ('example.invalid', 443, '/x', True)
        assert af.parse_ws_uri('WS://host', flavor) == ('host', 80, '/', False)
        assert af.parse_ws_uri('foo://host/x', flavor) is None


def test_cjson_print_matches_captured_event_bodies(captures_dir):
    data = results(captures_dir, 'jambonz')
    scen = next(s for s in data['scenarios'] if s['name'] == 'C-server-messages')
    sent = [t['text'] for t in scen['ws']['text_frames'] if t['dir'] == 'server->fs']
    bodies = {e['Event-Subclass']: e.get('_body') for e in scen['esl_events']
              if e.get('Event-Subclass', '').startswith('mod_audio_fork::')}
    checked = 0
    for text in sent:
        if '[truncated' in text:   # the capture shortened the playAudio payloads
            continue
        try:
            msg = af.cjson_parse(text)
        except ValueError:
            assert text == 'this is not json'
            continue
        mtype = af.message_type(msg)
        if mtype in ('transcription', 'transfer', 'error'):
            assert af.cjson_print(msg.get_item('data')) == bodies['mod_audio_fork::' + mtype]
            checked += 1
        elif mtype == 'json':
            assert af.cjson_print(msg) == bodies['mod_audio_fork::json']
            checked += 1
    assert checked == 4


def test_cjson_details():
    assert af.cjson_print(af.cjson_parse('{"a": 1.0, "b": 0.93, "c": [true, null], "a": "dup"}')) == \
        '{"a":1,"b":0.93,"c":[true,null],"a":"dup"}'
    assert af.message_type(af.cjson_parse('{"TYPE":"killAudio"}')) == 'killAudio'   # case-insensitive lookup
    assert af.message_type(af.cjson_parse('{"type":5}')) == 'json'
    assert af.message_type(af.cjson_parse('[1,2]')) == 'json'
    assert af.cjson_parse('  {"a":1} trailing') == [('a', 1)]
    with pytest.raises(ValueError):
        af.cjson_parse('this is not json')
    with pytest.raises(ValueError):
        af.cjson_parse('{"a": NaN}')


def test_bad_input_never_raises():
    import random
    rng = random.Random(1234)
    alphabet = " '\\^|{}[]\"abc:/0123456789\n\t"
    for _ in range(3000):
        text = ''.join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for flavor in FLAVORS:
            cmd = af.parse_command(text, flavor)
            assert cmd.reply in (None, af.USAGE[flavor])
            af.parse_command('u start ' + text, flavor)
        separate_string(text, max_parts=rng.randint(1, 12))
        try:
            af.cjson_print(af.cjson_parse(text))
        except ValueError:
            pass
    p = af.Playout(lambda *a, **k: None, 16000)
    for _ in range(200):
        p.incoming_binary(bytes(rng.randrange(256) for _ in range(rng.randint(0, 700))))
        if rng.random() < 0.2:
            p.add_mark('m')
        p.pull(320)
