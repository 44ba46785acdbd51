"""The simulator's inbound event socket over TCP: greeting, auth, pre-auth rule, event subscriptions,
filters, api/bgapi (+BACKGROUND_JOB), originate, exit. Expected bytes come from the inbound capture."""
import json

import pytest

from sim_support import RawESL, event_of, load_blocks
from switch_sim import Simulator

CAPTURE = load_blocks('inbound-esl-transcript-jambonz.jsonl')


def _captured(prefix: bytes) -> bytes:
    for direction, data in CAPTURE:
        if direction == 'FS->CLIENT' and data.startswith(prefix):
            return data
    raise AssertionError('not in capture: %r' % prefix)


def _captured_reply(text: str) -> bytes:
    return _captured(b'Content-Type: command/reply\nReply-Text: ' + text.encode())


@pytest.fixture
def sim():
    s = Simulator(socket_target=('127.0.0.1', 9)).start()   # nothing listens on the socket target
    yield s
    s.stop()


def _login(sim):
    esl = RawESL.connect(sim.esl_address)
    _h, _b, raw = esl.frame()
    assert raw == _captured(b'Content-Type: auth/request')
    headers, _b, raw = esl.command('auth ClueCon')
    assert raw == _captured_reply('+OK accepted')
    return esl


def test_pre_auth_only_auth_and_exit(sim):
    esl = RawESL.connect(sim.esl_address)
    esl.frame()
    headers, _b, _raw = esl.command('api status')
    assert headers['Reply-Text'] == '-ERR command not found'
    headers, _b, _raw = esl.command('event plain ALL')
    assert headers['Reply-Text'] == '-ERR command not found'
    headers, _b, raw = esl.command('exit')
    assert raw == _captured_reply('+OK bye')
    _h, _b, raw = esl.frame()
    assert raw == _captured(b'Content-Type: text/disconnect-notice')
    assert esl.closed()


def test_wrong_password_is_rejected_and_disconnected(sim):
    esl = RawESL.connect(sim.esl_address)
    esl.frame()
    headers, _b, _raw = esl.command('auth wrong')
    assert headers['Reply-Text'] == '-ERR invalid'
    headers, body, raw = esl.frame()
    assert headers['Content-Type'] == 'text/disconnect-notice'
    assert len(body) == 67 and raw == _captured(b'Content-Type: text/disconnect-notice')
    assert esl.closed()


def test_event_api_and_exit(sim):
    esl = _login(sim)
    cmd = [d for direction, d in CAPTURE if direction == 'CLIENT->FS' and d.startswith(b'event plain')][0]
    headers, _b, raw = esl.command(cmd.decode())
    assert raw == _captured_reply('+OK event listener enabled plain')
    assert esl.command('event')[0]['Reply-Text'] == '-ERR no keywords supplied'
    assert esl.command('frobnicate')[0]['Reply-Text'] == '-ERR command not found'

    headers, body, raw = esl.command('api nosuchcommand a b')
    assert headers['Content-Type'] == 'api/response'
    assert body == b'-ERR nosuchcommand Command not found!\n'
    assert raw == b'Content-Type: api/response\nContent-Length: %d\n\n' % len(body) + body

    sim.register_api('sim_test_empty', lambda s, args: '')
    headers, body, raw = esl.command('api sim_test_empty')
    assert raw == _captured(b'Content-Type: api/response\nContent-Length: 14\n\n-ERR no reply\n')
    sim.register_api('sim_test_echo', lambda s, args: '+OK [%s]\n' % args)
    assert esl.command('api sim_test_echo x  y')[1] == b'+OK [x  y]\n'
    assert esl.command('api uuid_exists 00000000-0000-0000-0000-000000000000')[1] == b'false'
    assert esl.command('api uuid_kill 00000000-0000-0000-0000-000000000000')[1] == b'-ERR No such channel!\n'

    headers, _b, raw = esl.command('exit')
    assert raw == _captured_reply('+OK bye')
    assert esl.frame()[2] == _captured(b'Content-Type: text/disconnect-notice')
    assert esl.closed()


def _next_event(esl, name, uuid=None, fmt='plain'):
    while True:
        headers, body, _raw = esl.frame()
        if headers.get('Content-Type') == 'text/event-json':
            ev = json.loads(body)
        elif headers.get('Content-Type') == 'text/event-plain':
            ev = event_of(body)
        else:
            continue
        if ev.get('Event-Name') == name and (uuid is None or ev.get('Unique-ID') == uuid):
            return ev


def test_bgapi_originate_and_background_job(sim):
    esl = _login(sim)
    esl.command('event plain BACKGROUND_JOB CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE')
    job = '11111111-2222-3333-4444-555555555555'
    leg = 'aaaaaaaa-0000-0000-0000-000000000001'
    headers, _b, raw = esl.command('bgapi originate {origination_uuid=%s,origination_caller_id_number=15551230009}'
                                   'sofia/gateway/gw/15557654321 &park()\nJob-UUID: %s' % (leg, job))
    assert raw == ('Content-Type: command/reply\nReply-Text: +OK Job-UUID: %s\nJob-UUID: %s\n\n'
                   % (job, job)).encode()
    answer = _next_event(esl, 'CHANNEL_ANSWER', leg)
    assert answer['Caller-Caller-ID-Number'] == '15551230009'
    assert answer['Call-Direction'] == 'outbound'
    bg = _next_event(esl, 'BACKGROUND_JOB')
    assert bg['Job-UUID'] == job and bg['Job-Command'] == 'originate'
    assert bg['Job-Command-Arg'].endswith('&park()')
    # the body of BACKGROUND_JOB is the api output
    assert esl.command('api uuid_exists %s' % leg)[1] == b'true'
    esl.command('api uuid_setvar %s foo bar baz' % leg)
    assert esl.command('api uuid_getvar %s foo' % leg)[1] == b'bar baz'
    assert esl.command('api uuid_getvar %s nope' % leg)[1] == b'_undef_'
    assert esl.command('api uuid_kill %s USER_BUSY' % leg)[1] == b'+OK\n'
    done = _next_event(esl, 'CHANNEL_HANGUP_COMPLETE', leg)
    assert done['Hangup-Cause'] == 'USER_BUSY' and done['variable_hangup_cause_q850'] == '17'
    assert esl.command('api originate error/user_busy &park()')[1] == b'-ERR USER_BUSY\n'


def test_background_job_body(sim):
    esl = _login(sim)
    esl.command('event plain BACKGROUND_JOB')
    sim.register_api('sim_test_echo', lambda s, args: '+OK [%s]\n' % args)
    headers, _b, _raw = esl.command('bgapi sim_test_echo hello')
    job = headers['Job-UUID']
    while True:
        h, body, _raw = esl.frame()
        if h.get('Content-Type') == 'text/event-plain':
            break
    ev = event_of(body)
    assert ev['Job-UUID'] == job
    head, _, rest = body.partition(b'\n\n')
    expected = b'+OK [hello]\n'
    assert head.endswith(b'\nContent-Length: %d' % len(expected)) and rest == expected


def test_filters_and_json_format(sim):
    esl = _login(sim)
    a, b = 'aaaaaaaa-0000-0000-0000-00000000000a', 'aaaaaaaa-0000-0000-0000-00000000000b'
    for leg in (a, b):
        assert esl.command('api originate {origination_uuid=%s}sofia/gw/x/1 &park()' % leg)[1] == \
            ('+OK %s\n' % leg).encode()
    headers, _b, _raw = esl.command('event json CHANNEL_HANGUP_COMPLETE')
    assert headers['Reply-Text'] == '+OK event listener enabled json'
    headers, _b, _raw = esl.command('filter Unique-ID %s' % a)
    assert headers['Reply-Text'] == '+OK filter added. [Unique-ID]=[%s]' % a
    esl.command('api uuid_kill %s' % b)
    esl.command('api uuid_kill %s' % a)
    ev = _next_event(esl, 'CHANNEL_HANGUP_COMPLETE')
    assert ev['Unique-ID'] == a           # b's event was filtered out
    headers, _b, _raw = esl.command('filter delete Unique-ID %s' % a)
    assert headers['Reply-Text'].startswith('+OK filter deleted.')
    assert esl.command('nixevent CHANNEL_HANGUP_COMPLETE')[0]['Reply-Text'] == '+OK events nixed'
    assert esl.command('noevents')[0]['Reply-Text'] == '-ERR not listening for events'
    esl.command('event plain ALL')
    assert esl.command('noevents')[0]['Reply-Text'] == '+OK no longer listening for events'


def test_negative_filter_blocks_events(sim):
    esl = _login(sim)
    esl.command('event plain CHANNEL_HANGUP_COMPLETE')
    a, b = 'bbbbbbbb-0000-0000-0000-00000000000a', 'bbbbbbbb-0000-0000-0000-00000000000b'
    esl.command('filter Event-Name CHANNEL_HANGUP_COMPLETE')
    esl.command('filter Unique-ID -%s' % b)
    for leg in (a, b):
        esl.command('api originate {origination_uuid=%s}sofia/gw/x/1 &park()' % leg)
    esl.command('api uuid_kill %s' % b)
    esl.command('api uuid_kill %s' % a)
    assert _next_event(esl, 'CHANNEL_HANGUP_COMPLETE')['Unique-ID'] == a


def test_show_channels_json(sim):
    esl = _login(sim)
    leg = 'cccccccc-0000-0000-0000-000000000001'
    assert json.loads(esl.command('api show channels as json')[1]) == {'row_count': 0}
    esl.command('api originate {origination_uuid=%s}sofia/gw/x/15550001 &park()' % leg)
    rows = json.loads(esl.command('api show channels as json')[1])
    assert rows['row_count'] == 1 and rows['rows'][0]['uuid'] == leg
    assert rows['rows'][0]['dest'] == '15550001' and rows['rows'][0]['callstate'] == 'ACTIVE'
    text = esl.command('api show channels')[1].decode()
    assert text.startswith('uuid,direction,created') and text.endswith('\n1 total.\n')


def test_bad_input_does_not_break_the_server(sim):
    import os
    esl = RawESL.connect(sim.esl_address)
    esl.frame()
    esl.sock.sendall(os.urandom(2000) + b'\n\n')          # garbage: answered, never fatal to the server
    esl.close()
    esl = RawESL.connect(sim.esl_address)
    esl.frame()
    esl.send('auth ClueCon\nContent-Length: 99999999999\n\n')   # FreeSWITCH drops such a socket
    assert esl.closed()
    esl = _login(sim)                                     # the server still works
    assert esl.command('api uuid_exists nope')[1] == b'false'
    assert esl.command('api sim_call {not json')[1].startswith(b'-ERR')
    assert esl.command('api originate')[1].startswith(b'-USAGE')
    assert esl.command('bgapi')[0]['Reply-Text'].startswith('+OK Job-UUID')


def test_subscriptions_add_up_and_custom_subclasses(sim):
    def fire_custom(s, args):
        uuid, subclass = args.split()
        s.get_channel(uuid).fire_event('CUSTOM', [('X-Test', 'a b')], body='{"a":1}', subclass=subclass)
        return '+OK\n'
    sim.register_api('sim_test_custom', fire_custom)
    esl = _login(sim)
    esl.command('event plain CHANNEL_HANGUP_COMPLETE')
    esl.command('event plain CUSTOM test::thing')          # adds to the previous subscription
    leg = 'ffffffff-0000-0000-0000-000000000001'
    esl.command('api originate {origination_uuid=%s}sofia/gw/x/1 &park()' % leg)
    esl.command('api sim_test_custom %s test::other' % leg)  # not subscribed
    esl.command('api sim_test_custom %s test::thing' % leg)
    esl.command('api uuid_kill %s' % leg)
    frames = list(esl.backlog)
    while not any(b'CHANNEL_HANGUP_COMPLETE' in b for _h, b, _r in frames):
        frames.append(esl.frame())
    bodies = [b for h, b, _r in frames if h.get('Content-Type') == 'text/event-plain']
    names = [(event_of(b)['Event-Name'], event_of(b).get('Event-Subclass')) for b in bodies]
    assert names == [('CUSTOM', 'test::thing'), ('CHANNEL_HANGUP_COMPLETE', None)]
    custom = bodies[0]
    assert custom.startswith(b'Event-Subclass: test%3A%3Athing\nEvent-Name: CUSTOM\n')
    assert b'\nX-Test: a%20b\nContent-Length: 7\n\n{"a":1}' in custom and custom.endswith(b'{"a":1}')
    assert b'variable_uuid: ' + leg.encode() in custom          # CUSTOM events carry the variables
