"""Apps and APIs of the simulator driven over the inbound event socket (originate, uuid_broadcast,
uuid_transfer, uuid_record, sim_dtmf) and one outbound call for send_dtmf / sleep / read."""
import os
import re
import time

import pytest
import soundfile

from sim_support import Controller, RawESL, event_of, tone_share
from switch_sim import CallScript, Simulator


@pytest.fixture
def sim():
    s = Simulator(socket_target=('127.0.0.1', 9)).start()
    yield s
    s.stop()


def login(sim, events='ALL'):
    esl = RawESL.connect(sim.esl_address)
    esl.frame()
    esl.command('auth ClueCon')
    esl.command('event plain %s' % events)
    return esl


def collect(esl, uuid, until='CHANNEL_HANGUP_COMPLETE', timeout=10):
    out = []
    deadline = time.monotonic() + timeout
    while True:
        headers, body, _raw = esl.next_frame(timeout=max(0.1, deadline - time.monotonic()))
        if headers.get('Content-Type') != 'text/event-plain':
            continue
        ev = event_of(body)
        if ev.get('Unique-ID') != uuid:
            continue
        out.append(ev)
        if ev['Event-Name'] == until:
            return out


def api(esl, text):
    return esl.command('api ' + text)[1].decode()


def test_broadcast_vars_and_transfer(sim):
    esl = login(sim)
    leg = 'dddddddd-0000-0000-0000-000000000001'
    assert api(esl, 'originate {origination_uuid=%s,foo=bar}sofia/gw/x/200 &park()' % leg) == '+OK %s\n' % leg
    assert api(esl, 'uuid_getvar %s foo' % leg) == 'bar'
    assert api(esl, 'uuid_broadcast %s \'multiset::a=1 b=two\'' % leg) == '+OK Message sent\n'
    assert api(esl, 'uuid_broadcast %s unset::foo' % leg) == '+OK Message sent\n'
    assert api(esl, 'uuid_broadcast %s set::greeting=${b}-x' % leg) == '+OK Message sent\n'
    events = collect(esl, leg, until='CHANNEL_EXECUTE_COMPLETE')
    events += collect(esl, leg, until='CHANNEL_EXECUTE_COMPLETE')
    last = collect(esl, leg, until='CHANNEL_EXECUTE_COMPLETE')[-1]
    assert last['Application'] == 'set' and last['Application-Data'] == 'greeting=two-x'   # ${} expanded
    assert last['variable_a'] == '1' and last['variable_greeting'] == 'two-x' and 'variable_foo' not in last
    assert api(esl, "uuid_transfer %s '^^;playback:tone_stream://%%(200,0,500);hangup:USER_BUSY' inline" % leg) == '+OK\n'
    events = collect(esl, leg)
    names = [(e['Event-Name'], e.get('Application')) for e in events]
    assert ('CHANNEL_EXECUTE', 'playback') in names and ('CHANNEL_EXECUTE', 'hangup') in names
    assert names.index(('CHANNEL_EXECUTE_COMPLETE', 'park')) < names.index(('CHANNEL_EXECUTE', 'playback'))
    assert events[-1]['Hangup-Cause'] == 'USER_BUSY'


def test_uuid_record_api(sim, tmp_path):
    esl = login(sim, 'RECORD_START RECORD_STOP CHANNEL_HANGUP_COMPLETE')
    leg = 'dddddddd-0000-0000-0000-000000000002'
    path = str(tmp_path / 'sub' / 'api.wav')
    api(esl, 'originate {origination_uuid=%s}sofia/gw/x/200 &endless_playback(tone_stream://%%(1000,0,800);L=-1)' % leg)
    assert api(esl, 'uuid_record %s start %s' % (leg, path)) == '+OK Success\n'
    start = collect(esl, leg, until='RECORD_START')[-1]
    assert start['Record-File-Path'] == path
    assert api(esl, 'uuid_record %s stop %s' % (leg, path)) == '+OK Success\n'
    stop = collect(esl, leg, until='RECORD_STOP')[-1]
    assert stop['Record-Completion-Cause'] == 'success-maxtime'
    data, rate = soundfile.read(path, dtype='int16')
    assert rate == 8000 and len(data) == int(stop['variable_record_samples']) > 0
    assert tone_share(data, rate, 800) > 0.9
    assert api(esl, 'uuid_record %s stop %s' % (leg, path)).startswith('-ERR')
    api(esl, 'uuid_kill %s' % leg)
    collect(esl, leg)


def test_record_session_sample_rate_and_hangup_finalises(sim, tmp_path):
    esl = login(sim, 'RECORD_STOP CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE')
    leg = 'dddddddd-0000-0000-0000-000000000003'
    path = str(tmp_path / 'r16.wav')
    api(esl, 'originate {origination_uuid=%s,record_sample_rate=16000}sofia/gw/x/200 '
             '&endless_playback(tone_stream://%%(1000,0,600);L=-1)' % leg)
    api(esl, 'uuid_record %s start %s' % (leg, path))
    esl.command('api sched_hangup +1 %s' % leg)
    events = collect(esl, leg)
    names = [e['Event-Name'] for e in events]
    assert names == ['CHANNEL_HANGUP', 'RECORD_STOP', 'CHANNEL_HANGUP_COMPLETE']
    assert events[1]['Record-Completion-Cause'] == 'success-silence'    # as captured for hangup
    assert events[0]['Hangup-Cause'] == 'ALLOTTED_TIMEOUT'
    info = soundfile.info(path)
    assert info.samplerate == 16000
    assert os.path.getsize(path) == 44 + 2 * info.frames


def test_sleep_ends_on_dtmf_and_leaves_it_queued(sim):
    esl = login(sim, 'CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE DTMF CHANNEL_HANGUP_COMPLETE')
    leg = 'dddddddd-0000-0000-0000-000000000004'
    api(esl, 'originate {origination_uuid=%s}sofia/gw/x/200 &park()' % leg)
    api(esl, 'uuid_broadcast %s sleep::5000' % leg)
    api(esl, "uuid_broadcast %s 'read::1 3 silence_stream://100 got 2000 #'" % leg)
    collect(esl, leg, until='CHANNEL_EXECUTE')
    started = time.monotonic()
    assert api(esl, 'sim_dtmf %s 7#' % leg) == '+OK\n'
    events = collect(esl, leg, until='CHANNEL_EXECUTE_COMPLETE')
    assert events[-1]['Application'] == 'sleep' and time.monotonic() - started < 2
    assert 'DTMF' not in [e['Event-Name'] for e in events]      # not dequeued by sleep
    events = collect(esl, leg, until='CHANNEL_EXECUTE_COMPLETE')
    done = events[-1]
    assert done['Application'] == 'read'
    assert [e['DTMF-Digit'] for e in events if e['Event-Name'] == 'DTMF'] == ['7', '#']
    assert done['variable_got'] == '7' and done['variable_read_result'] == 'success'
    assert done['variable_read_terminator_used'] == '#'
    api(esl, 'uuid_kill %s' % leg)
    collect(esl, leg)


def test_send_dtmf_is_heard_by_the_caller(tmp_path):
    heard = []

    def controller(esl, rec):
        esl.send('connect\n\n')
        esl.frame()
        for cmd in ('myevents', 'linger',
                    'sendmsg\ncall-command: execute\nexecute-app-name: answer\nevent-lock: true',
                    'sendmsg\ncall-command: execute\nexecute-app-name: send_dtmf\nexecute-app-arg: 1@300\n'
                    'event-lock: true',
                    'sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING'):
            esl.send(cmd + '\n\n')
        while esl.frame(timeout=10)[0].get('Content-Type') != 'text/disconnect-notice':
            pass
        esl.send('exit\n\n')

    ctl = Controller(controller)
    sim = Simulator(socket_target=ctl.address).start()
    try:
        call = sim.place_call(CallScript(to='300', keep_heard=True))
        summary = call.wait(10)
        heard = call.heard()
    finally:
        sim.stop()
        ctl.stop()
    assert summary['hangup_cause'] == 'NORMAL_CLEARING'
    assert len(heard) >= 300 * 8
    both = tone_share(heard, 8000, 697, 20) + tone_share(heard, 8000, 1209, 20)
    assert both > 0.8


def test_originate_socket_runs_an_outbound_session():
    seen = {}

    def controller(esl, rec):
        esl.send('connect\n\n')
        _h, _b, raw = esl.frame()
        seen.update(dict(l.split(': ', 1) for l in raw.decode().split('\n') if ': ' in l))
        esl.send('exit\n\n')
        while esl.frame()[0].get('Content-Type') != 'text/disconnect-notice':
            pass

    ctl = Controller(controller)
    sim = Simulator().start()
    try:
        esl = login(sim, 'CHANNEL_HANGUP_COMPLETE')
        leg = 'dddddddd-0000-0000-0000-000000000005'
        reply = api(esl, "originate {origination_uuid=%s,origination_caller_id_number=15550002222}"
                         "sofia/gateway/gw/15559990000 '&socket(%s:%d async full)'" % ((leg,) + tuple(ctl.address)))
        assert reply == '+OK %s\n' % leg
        done = collect(esl, leg)[-1]
        assert ctl.result()['error'] is None
    finally:
        sim.stop()
        ctl.stop()
    assert seen['Call-Direction'] == 'outbound' and seen['Unique-ID'] == leg
    # FreeSWITCH flips caller and callee id on an originated channel: its caller id is "Outbound Call"
    # <the dial string's sanitized last part> (tests/fixtures/fs-captures/originate-callerid.json)
    assert (seen['Caller-Caller-ID-Name'], seen['Caller-Caller-ID-Number']) == ('Outbound%20Call', '15559990000')
    assert seen['Caller-Callee-ID-Number'] == seen['Caller-Orig-Caller-ID-Number'] == '15550002222'
    assert seen['Channel-Destination-Number'] == '15559990000'
    assert seen['Answer-State'] == 'answered'
    assert done['Hangup-Cause'] == 'NORMAL_CLEARING'


def test_playback_terminators(sim):
    esl = login(sim, 'PLAYBACK_START PLAYBACK_STOP DTMF CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP_COMPLETE')
    leg = 'dddddddd-0000-0000-0000-000000000006'
    api(esl, 'originate {origination_uuid=%s}sofia/gw/x/200 &park()' % leg)
    api(esl, 'uuid_broadcast %s playback::tone_stream://%%(5000,0,500)' % leg)
    collect(esl, leg, until='PLAYBACK_START')
    api(esl, 'sim_dtmf %s 5' % leg)            # not a terminator (default `*`): dequeued and discarded
    collect(esl, leg, until='DTMF')
    api(esl, 'sim_dtmf %s *' % leg)
    events = collect(esl, leg, until='CHANNEL_EXECUTE_COMPLETE')
    names = [(e['Event-Name'], e.get('DTMF-Digit')) for e in events]
    assert names.index(('DTMF', '*')) < names.index(('PLAYBACK_STOP', None))
    stop = [e for e in events if e['Event-Name'] == 'PLAYBACK_STOP'][0]
    assert stop['Playback-Status'] == 'break'
    assert events[-1]['variable_playback_terminator_used'] == '*'
    assert events[-1]['Application-Response'] == 'FILE PLAYED'
    # playback_terminators=none: `*` does not stop it
    api(esl, 'uuid_setvar %s playback_terminators none' % leg)
    api(esl, 'uuid_broadcast %s playback::tone_stream://%%(400,0,500)' % leg)
    collect(esl, leg, until='PLAYBACK_START')
    api(esl, 'sim_dtmf %s *' % leg)
    events = collect(esl, leg, until='CHANNEL_EXECUTE_COMPLETE')
    assert [e['Playback-Status'] for e in events if e['Event-Name'] == 'PLAYBACK_STOP'] == ['done']
    assert 'variable_playback_terminator_used' not in events[-1]
    api(esl, 'uuid_kill %s' % leg)
    collect(esl, leg)


def test_divert_events_sends_dtmf_only_to_the_controlling_socket():
    def controller(esl, rec):
        esl.send('connect\n\n')
        _h, _b, raw = esl.frame()
        uuid = dict(l.split(': ', 1) for l in raw.decode().split('\n') if ': ' in l)['Unique-ID']
        for cmd in ('myevents', 'linger', 'divert_events on'):
            rec[cmd] = esl.command(cmd)[0]['Reply-Text']
        esl.command('sendmsg\ncall-command: execute\nexecute-app-name: answer\nevent-lock: true')
        esl.command('api sim_dtmf %s 9' % uuid)
        while True:
            h, body, _raw = esl.next_frame(timeout=10)
            if h.get('Content-Type') == 'text/event-plain' and event_of(body)['Event-Name'] == 'DTMF':
                rec['dtmf'] = event_of(body)['DTMF-Digit']
                break
        esl.command('sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING')
        while esl.next_frame(timeout=10)[0].get('Content-Type') != 'text/disconnect-notice':
            pass
        esl.send('exit\n\n')

    ctl = Controller(controller)
    sim = Simulator(socket_target=ctl.address).start()
    try:
        watcher = login(sim, 'DTMF CHANNEL_HANGUP_COMPLETE')
        call = sim.place_call(CallScript(to='300'))
        seen = collect(watcher, call.uuid)
        rec = ctl.result(10)
    finally:
        sim.stop()
        ctl.stop()
    assert rec['error'] is None, rec['error']
    assert rec['divert_events on'] == '+OK events diverted'
    assert rec['dtmf'] == '9'
    assert [e['Event-Name'] for e in seen] == ['CHANNEL_HANGUP_COMPLETE']   # the inbound listener got no DTMF


def test_misc_apis(sim):
    esl = login(sim, 'CHANNEL_HANGUP_COMPLETE')
    assert api(esl, 'version').startswith('FreeSWITCH Version')
    a, b = 'eeeeeeee-0000-0000-0000-00000000000a', 'eeeeeeee-0000-0000-0000-00000000000b'
    for leg in (a, b):
        api(esl, 'originate {origination_uuid=%s,group=g1}sofia/gw/x/200 &park()' % leg)
    status = api(esl, 'status')
    assert status.startswith('UP ') and '2 session(s) - peak 2' in status
    reply = api(esl, 'sched_api +0.2 grp uuid_kill %s USER_BUSY' % a)
    assert re.match(r'^\+OK Added: \d+, Group: grp\n$', reply)
    done = collect(esl, a)[-1]
    assert done['Hangup-Cause'] == 'USER_BUSY'
    assert api(esl, 'hupall MANAGER_REQUEST group g1') == \
        '+OK hangup all channels matching [group]=[g1] with cause: MANAGER_REQUEST\n'
    assert collect(esl, b)[-1]['Hangup-Cause'] == 'MANAGER_REQUEST'
    assert api(esl, 'uuid_answer %s' % a) == '-ERR no such channel\n'


def test_uuid_transfer_inline_reruns_socket():
    from gevent.event import Event
    connections = []
    first_ready = Event()

    def controller(esl, rec):
        esl.send('connect\n\n')
        _h, _b, raw = esl.frame()
        rec['uuid'] = dict(l.split(': ', 1) for l in raw.decode().split('\n') if ': ' in l)['Unique-ID']
        connections.append(rec)
        esl.command('myevents')
        if len(connections) == 1:
            first_ready.set()
            while True:                      # the transfer ends this socket with the final notice
                h, _b, _r = esl.next_frame(timeout=10)
                if h.get('Content-Type') == 'text/disconnect-notice':
                    rec['notice'] = h
                    break
        else:
            esl.command('sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING')
            while esl.next_frame(timeout=10)[0].get('Content-Type') != 'text/disconnect-notice':
                pass

    ctl = Controller(controller)
    sim = Simulator(socket_target=ctl.address).start()
    try:
        esl = login(sim, 'CHANNEL_HANGUP_COMPLETE')
        call = sim.place_call(CallScript(to='400'))
        assert first_ready.wait(10)
        reply = api(esl, "uuid_transfer %s 'socket:%s:%d async full' inline" % ((call.uuid,) + tuple(ctl.address)))
        assert reply == '+OK\n'
        summary = call.wait(10)
        r1, r2 = ctl.result(10), ctl.result(10)
    finally:
        sim.stop()
        ctl.stop()
    assert r1['error'] is None and r2['error'] is None
    assert len(connections) == 2 and connections[0]['uuid'] == connections[1]['uuid'] == call.uuid
    assert connections[0]['notice']['Content-Disposition'] == 'disconnect'
    assert summary['hangup_cause'] == 'NORMAL_CLEARING'
    assert summary['events'].count('CHANNEL_PARK') == 2
